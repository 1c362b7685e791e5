package sensor

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// LinkDrops returns the packets the interface itself dropped so far, received and sent
// (rx_dropped + tx_dropped of its link statistics): what a capture file's isb_ifdrop counts.
func LinkDrops(ifindex int) (uint64, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0, fmt.Errorf("interface %d: %w", ifindex, err)
	}
	st := l.Attrs().Statistics
	if st == nil {
		return 0, fmt.Errorf("interface %d: no link statistics", ifindex)
	}
	return st.RxDropped + st.TxDropped, nil
}
