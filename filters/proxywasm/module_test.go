package proxywasm_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
)

// TestModuleWrappersMatchVM checks that the wasip1 build's package-level
// hostcalls (module_wasip1.go) are exactly the methods of VM, so a filter
// written against the SDK's package functions finds every one of them.
func TestModuleWrappersMatchVM(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "module_wasip1.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wrappers []string
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.IsExported() &&
			fn.Name.Name != "ModuleVM" && fn.Name.Name != "SetVMContext" {
			wrappers = append(wrappers, fn.Name.Name)
		}
	}
	var methods []string
	vt := reflect.TypeFor[*proxywasm.VM]()
	for i := range vt.NumMethod() {
		methods = append(methods, vt.Method(i).Name)
	}
	slices.Sort(wrappers)
	if !slices.Equal(wrappers, methods) {
		t.Errorf("module_wasip1.go wraps %v,\nVM has methods %v", wrappers, methods)
	}
}

// TestVMsAreIndependent runs two emulators (two VMs) at once, each with its
// own configuration and streams: nothing in the SDK is process-global. Run
// with -race.
func TestVMsAreIndependent(t *testing.T) {
	var wg sync.WaitGroup
	for _, lane := range []string{"blue", "green"} {
		wg.Go(func() {
			host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
				WithVMContext(newLaneVM).WithPluginConfiguration([]byte(lane)))
			defer reset()
			host.StartVM()
			if host.StartPlugin() != proxywasm.OnPluginStartStatusOK {
				t.Errorf("%s: plugin did not start", lane)
				return
			}
			for range 200 {
				id := host.InitializeHttpContext()
				host.CallOnRequestHeaders(id, [][2]string{{":path", "/x"}}, true)
				got := host.GetCurrentRequestHeaders(id)
				if len(got) != 2 || got[1][1] != lane {
					t.Errorf("%s: headers %v", lane, got)
					return
				}
				host.CompleteHttpContext(id)
			}
		})
	}
	wg.Wait()
}
