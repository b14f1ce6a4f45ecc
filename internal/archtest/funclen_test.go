package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// maxFuncLines is the longest a function may be, from its signature to its
// closing brace: past it, a function does more than one thing and wants
// its steps named.
const maxFuncLines = 150

// TestFunctionsAreShort parses every Go file of the repository (tests,
// guests and tools too) and fails on any function of maxFuncLines or more,
// naming it.
func TestFunctionsAreShort(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, l := range longFunctions(t, root, maxFuncLines) {
		t.Errorf("%s is %d lines (at most %d): split it into named steps", l.where, l.lines, maxFuncLines-1)
	}
}

// TestLongFunctionFound shows the check fails on a function that is too long.
func TestLongFunctionFound(t *testing.T) {
	dir := t.TempDir()
	src := "package p\n\nfunc long() {\n" + strings.Repeat("\t_ = 1\n", maxFuncLines) + "}\n\nfunc short() {}\n"
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got := longFunctions(t, dir, maxFuncLines)
	if len(got) != 1 || !strings.HasSuffix(got[0].where, "p.go:3 long") {
		t.Fatalf("long functions %v, want only p.go:3 long", got)
	}
}

type longFunc struct {
	where string
	lines int
}

// longFunctions lists the functions under root of at least limit lines,
// skipping bin/ and hidden folders.
func longFunctions(t *testing.T, root string, limit int) []longFunc {
	t.Helper()
	var out []longFunc
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (d.Name() == "bin" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
			if n := end.Line - start.Line + 1; n >= limit {
				out = append(out, longFunc{where: p + ":" + strconv.Itoa(start.Line) + " " + fn.Name.Name, lines: n})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
