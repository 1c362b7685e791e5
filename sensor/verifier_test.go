package sensor

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/cilium/ebpf"
)

// verifierBudget is the most processed instructions a program may take to verify: the kernel's
// limit is 1M, and a parser change that comes near it should be noticed here first, not on a
// user's kernel that prunes less well.
const verifierBudget = 700_000

// TestVerifierBudget loads both programs with the verifier's statistics and reports how many
// instructions it processed for each (bpf/README.md quotes these numbers), as they print and
// as they copy whole frames (attach -w).
func TestVerifierBudget(t *testing.T) {
	sensortest.RequireBPF(t)
	for _, frames := range []uint32{0, FrameMax} {
		t.Run(fmt.Sprintf("frame_snap=%d", frames), func(t *testing.T) { verifierBudgetOf(t, frames) })
	}
}

func verifierBudgetOf(t *testing.T, frameSnap uint32) {
	spec, err := gen.LoadSensor()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables["cfg"].Set(gen.SensorSensorConfig{SnapLarge: DefaultSnapLarge, SnapSmall: DefaultSnapSmall, FrameSnap: frameSnap}); err != nil {
		t.Fatal(err)
	}
	var objs gen.SensorObjects
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		t.Fatal(explainLoadError(err))
	}
	defer objs.Close()
	re := regexp.MustCompile(`processed (\d+) insns`)
	for name, p := range map[string]*ebpf.Program{"xdp_sensor": objs.XdpSensor, "tc_sensor": objs.TcSensor} {
		m := re.FindStringSubmatch(p.VerifierLog)
		if m == nil {
			t.Fatalf("%s: no statistics in the verifier log:\n%s", name, p.VerifierLog)
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s: %d instructions processed (budget %d, kernel limit 1000000)", name, n, verifierBudget)
		if n > verifierBudget {
			t.Errorf("%s: the verifier processed %d instructions, over the budget of %d", name, n, verifierBudget)
		}
	}
}
