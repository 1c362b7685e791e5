package sensor

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkEvent is a change of a network interface, as rtnetlink reports it.
type LinkEvent struct {
	Ifindex int
	Name    string
	Gone    bool // RTM_DELLINK: the interface was deleted; else it was added or changed
}

// LinkWatch follows the interfaces of the network namespace the process runs in (rtnetlink
// link events, RTNLGRP_LINK) from the moment it is made, so that an interface deleted while the
// sensor watches it is noticed at once.
type LinkWatch struct {
	// Events delivers every link event; it is closed when the watch ends (Close, or the
	// netlink socket failed: Err says why).
	Events <-chan LinkEvent
	done   chan struct{}
	err    chan error
}

// WatchLinks subscribes to link events.
func WatchLinks() (*LinkWatch, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	errs := make(chan error, 1)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("follow interface changes (rtnetlink): %w", err)
	}
	events := make(chan LinkEvent, 64)
	w := &LinkWatch{Events: events, done: done, err: errs}
	go func() {
		defer close(events)
		for u := range updates {
			ev := LinkEvent{Ifindex: int(u.Index), Gone: u.Header.Type == unix.RTM_DELLINK}
			if u.Link != nil {
				ev.Name = u.Link.Attrs().Name
			}
			select {
			case events <- ev:
			case <-done: // drop it; netlink closes updates once its socket is closed
			}
		}
	}()
	return w, nil
}

// Err returns the error that ended the watch, if one did.
func (w *LinkWatch) Err() error {
	select {
	case err := <-w.err:
		return err
	default:
		return nil
	}
}

// Close ends the watch.
func (w *LinkWatch) Close() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}

// InterfaceExists says whether an interface of index idx exists now.
func InterfaceExists(idx int) bool {
	_, err := netlink.LinkByIndex(idx)
	return err == nil
}
