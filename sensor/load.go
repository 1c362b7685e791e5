// Package sensor is the kernel side seen from Go: it loads the BPF objects of gen/, replays
// frames through them with BPF_PROG_TEST_RUN, reads their counters, decodes their records into
// stages.Packet values, and holds the Go twin of the kernel parser for capture files and
// machines without BPF.
package sensor

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/cilium/ebpf"
)

// Payload size limits and ring-buffer defaults; they mirror bpf/config.h.
const (
	// SnapMax is the largest payload a record carries (SNAP_MAX).
	SnapMax = 4096
	// DefaultSnapSmall is the payload kept for packets that do not look like DNS, TLS or HTTP.
	DefaultSnapSmall = 64
	// DefaultSnapLarge is the payload kept for DNS ports, TLS handshakes and HTTP heads.
	DefaultSnapLarge = SnapMax
	// DefaultRingSize is the size of the events ring buffer in bytes.
	DefaultRingSize = 8 << 20
	// DefaultFollowBytes is how much of a TCP direction message following keeps in the large
	// payload class (FOLLOW_BYTES, bpf/follow.h).
	DefaultFollowBytes = 8192
	// DefaultFollowFlows bounds the TCP directions followed at once (FOLLOW_FLOWS).
	DefaultFollowFlows = 65536
	// FrameMax is the most bytes of a frame a record carries when the programs copy whole
	// frames (Config.FrameSnap; FRAME_MAX in bpf/config.h).
	FrameMax = 262144
)

// Config holds the knobs set before load. The zero value means the defaults.
type Config struct {
	SnapSmall   uint16 // payload bytes for other packets (0: DefaultSnapSmall)
	SnapLarge   uint16 // payload bytes for DNS/TLS/HTTP-looking packets (0: DefaultSnapLarge)
	WakeupBytes uint32 // wake the reader each time this many more bytes wait, a power of two (0: the kernel's policy)
	RingSize    uint32 // ring buffer size, a power of two multiple of the page size (0: default)
	NoDecap     bool   // enter no tunnel: report the outer packet of VXLAN, GRE, IP in IP, ...
	// FollowBytes is how much of a TCP direction keeps the large payload class after a SYN, a
	// TLS record or HTTP request head cut by its segment, or a tiny segment that may start one
	// (bpf/follow.h; 0: DefaultFollowBytes). NoFollow turns following off.
	FollowBytes uint32
	NoFollow    bool
	FollowFlows uint32 // TCP directions followed at once, the follow map's bound (0: DefaultFollowFlows)
	// FrameSnap makes every record carry its frame from the first byte, up to this many
	// bytes (at most FrameMax); 0: only the payload bytes SnapSmall and SnapLarge say.
	FrameSnap uint32
	Filter    *KernelFilter // a filter expression evaluated before anything else (nil: none)
	// IngressOnly loads xdp_sensor alone (Objects.TC is nil): replays of frames that all came
	// in verify half the code.
	IngressOnly bool
}

func (c Config) withDefaults() Config {
	if c.SnapSmall == 0 {
		c.SnapSmall = DefaultSnapSmall
	}
	if c.SnapLarge == 0 {
		c.SnapLarge = DefaultSnapLarge
	}
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.FollowBytes == 0 {
		c.FollowBytes = DefaultFollowBytes
	}
	if c.FollowFlows == 0 {
		c.FollowFlows = DefaultFollowFlows
	}
	return c
}

// followBytes is cfg.follow_bytes: 0 when following is off.
func (c Config) followBytes() uint32 {
	if c.NoFollow {
		return 0
	}
	return c.FollowBytes
}

// Objects are the loaded programs and maps.
type Objects struct {
	XDP      *ebpf.Program // xdp_sensor
	TC       *ebpf.Program // tc_sensor
	Events   *ebpf.Map     // the ring buffer
	Counters *ebpf.Map     // per-CPU counters keyed by gen.SensorCounterKey
	LostByIf *ebpf.Map     // per-CPU records lost to a full ring, keyed by ifindex
	// FilteredByIf counts per CPU the packets the filter rejected, keyed by ifindex.
	FilteredByIf *ebpf.Map
	// FilterReplay is the filter's view of the replayed frame (read --kernel with a filter).
	FilterReplay *ebpf.Map
	// Follow holds the TCP directions whose segments get the large payload class (bpf/follow.h).
	Follow *ebpf.Map
	Config Config // the knobs the programs were loaded with

	objs gen.SensorObjects
}

// Load loads xdp_sensor, tc_sensor and their maps with cfg. A verifier rejection comes back
// with the verifier's whole log in the error.
func Load(cfg Config) (*Objects, error) {
	cfg = cfg.withDefaults()
	if cfg.SnapSmall > SnapMax || cfg.SnapLarge > SnapMax {
		return nil, fmt.Errorf("payload snap length above %d bytes", SnapMax)
	}
	if cfg.FrameSnap > FrameMax {
		return nil, fmt.Errorf("frame snap length %d above %d bytes", cfg.FrameSnap, FrameMax)
	}
	if cfg.WakeupBytes&(cfg.WakeupBytes-1) != 0 {
		return nil, fmt.Errorf("wake-up threshold %d is not a power of two", cfg.WakeupBytes)
	}
	spec, err := gen.LoadSensor()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	v, ok := spec.Variables["cfg"]
	if !ok {
		return nil, errors.New("the BPF object has no cfg variable")
	}
	if err := v.Set(gen.SensorSensorConfig{
		SnapLarge:   cfg.SnapLarge,
		SnapSmall:   cfg.SnapSmall,
		WakeupBytes: cfg.WakeupBytes,
		NoDecap:     boolU32(cfg.NoDecap),
		FollowBytes: cfg.followBytes(),
		FrameSnap:   cfg.FrameSnap,
	}); err != nil {
		return nil, fmt.Errorf("setting cfg: %w", err)
	}
	spec.Maps["events"].MaxEntries = cfg.RingSize
	spec.Maps["follow"].MaxEntries = cfg.FollowFlows
	if cfg.Filter != nil {
		if err := injectFilter(spec, cfg.Filter); err != nil {
			return nil, err
		}
	}

	o := &Objects{Config: cfg}
	if cfg.IngressOnly {
		var x struct {
			XdpSensor *ebpf.Program `ebpf:"xdp_sensor"`
			gen.SensorMaps
		}
		err = spec.LoadAndAssign(&x, nil)
		o.objs.XdpSensor, o.objs.SensorMaps = x.XdpSensor, x.SensorMaps
	} else {
		err = spec.LoadAndAssign(&o.objs, nil)
	}
	if err != nil {
		return nil, explainLoadError(explainFilterError(err, cfg.Filter))
	}
	o.XDP, o.TC = o.objs.XdpSensor, o.objs.TcSensor
	o.Events, o.Counters, o.LostByIf = o.objs.Events, o.objs.Counters, o.objs.LostByIface
	o.FilteredByIf, o.FilterReplay = o.objs.FilteredByIface, o.objs.FilterReplay
	o.Follow = o.objs.Follow
	return o, nil
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Close releases the programs and maps. Links made from the programs stay until closed.
func (o *Objects) Close() error { return o.objs.Close() }

// explainLoadError turns the usual load failures into errors that name the fix.
func explainLoadError(err error) error {
	var fe *FilterTooComplexError
	if errors.As(err, &fe) {
		return err
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("the kernel's verifier rejected the sensor programs (please report this with your kernel version):\n%s", strings.Join(ve.Log, "\n"))
	}
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("loading BPF programs needs root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (run with sudo, or see `chains-sensor check`): %w", err)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("this kernel lacks a feature the sensor needs (ring buffers need 5.8+, BTF; see `chains-sensor check`): %w", err)
	}
	return fmt.Errorf("loading the sensor programs: %w", err)
}
