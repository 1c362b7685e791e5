package stages_test

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/chains-sensor/chains-sensor"

// layer is each stages package's floor: a package may import only packages of lower floors.
// A new package under stages/ needs a floor here.
var layer = map[string]int{
	"stages":              0, // the vocabulary: the standard library only
	"stages/classify":     1,
	"stages/flows":        1,
	"stages/owners":       1, // cgroup paths: the vocabulary and golang-lru
	"stages/sinks/pcapng": 1, // the file format: the standard library and strftime
	"stages/protocols":    2,
	"stages/names":        3,
	"stages/sinks":        3,
	"stages/views":        4,
	"stages/fleet":        4, // the fleet's records: the views' objects (sinks), sent by nats.go
	"stages/zeeklog":      4, // Zeek-schema logs (--log-dir): the flows' community ID, miekg/dns's names
}

// testOnly are packages for tests: nothing else may import them.
var testOnly = map[string]bool{"stages/internal/stagestest": true, "sensor/sensortest": true,
	"stages/fleet/fleettest": true}

type listed struct {
	ImportPath string
	Standard   bool
	Imports    []string
}

// listPackages runs `go list -deps -json` over the module (test imports are not in Imports).
func listPackages(t *testing.T) map[string]listed {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-json", module+"/...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// TestImportsPointDown: within stages/ every import points to a lower floor, the vocabulary
// imports the standard library only, sensor/ imports nothing of stages/ but the vocabulary,
// and no package but a test imports a test helper.
func TestImportsPointDown(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	for path, p := range pkgs {
		rel, ok := strings.CutPrefix(path, module+"/")
		if !ok {
			continue
		}
		floor, inStages := layer[rel]
		if strings.HasPrefix(rel, "stages") && !inStages && !testOnly[rel] {
			t.Errorf("%s has no floor in imports_test.go's layer table", rel)
		}
		for _, imp := range p.Imports {
			dep, ours := strings.CutPrefix(imp, module+"/")
			switch {
			case rel == "stages" && !pkgs[imp].Standard:
				t.Errorf("the vocabulary imports %s: it may import the standard library only", imp)
			case !ours:
			case testOnly[dep] && !testOnly[rel]:
				t.Errorf("%s imports the test helper %s", rel, dep)
			case strings.HasPrefix(rel, "sensor") && strings.HasPrefix(dep, "stages") && dep != "stages":
				t.Errorf("%s imports %s: sensor/ may import only the vocabulary of stages/", rel, dep)
			case inStages && strings.HasPrefix(dep, "stages") && !testOnly[dep]:
				if f, known := layer[dep]; known && f >= floor {
					t.Errorf("%s (floor %d) imports %s (floor %d): imports point only down", rel, floor, dep, f)
				}
			case inStages && !strings.HasPrefix(dep, "stages"):
				t.Errorf("%s imports %s, outside stages/", rel, dep)
			}
		}
	}
}
