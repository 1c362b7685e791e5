//go:build !cgo

package filter

import (
	"errors"
	"fmt"
)

// errNoLibpcap is what a build without cgo says when asked for an expression.
var errNoLibpcap = errors.New("this chains-sensor was built without cgo, so without libpcap: filter expressions need a build with CGO_ENABLED=1 and libpcap-dev")

type cProgram struct{}

// Compile needs libpcap: without cgo every expression is refused.
func Compile(expr string, lt int, netmask uint32) (*Program, error) {
	return nil, fmt.Errorf("%w: %w", ErrSyntax, errNoLibpcap)
}

// CompileFile needs libpcap: without cgo every expression is refused.
func CompileFile(expr string, linktype int) (*Program, error) {
	return nil, fmt.Errorf("%w: %w", ErrSyntax, errNoLibpcap)
}

// Match is never reached without cgo (no Program can be compiled).
func (p *Program) Match(frame []byte, wireLen int) bool { return false }

func linkTypeDescription(lt int) string { return fmt.Sprintf("DLT %d", lt) }
