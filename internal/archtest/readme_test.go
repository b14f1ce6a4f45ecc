package archtest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// folderRow is one row of the README's "How it fits together" table: its
// first cell, a backquoted path, and the whole row.
type folderRow struct{ path, text string }

// fitsTogether reads the table rows of the README section "How it fits together".
func fitsTogether(t *testing.T, readme string) []folderRow {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []folderRow
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## How it fits together"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.TrimPrefix(line, "| `")
		path, _, ok := strings.Cut(cell, "`")
		if !ok {
			t.Fatalf("README row without a closing backquote: %s", line)
		}
		rows = append(rows, folderRow{path: strings.TrimSuffix(path, "/"), text: line})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no table under \"## How it fits together\"", readme)
	}
	return rows
}

// trackedFolders returns the first- and second-level folders git tracks
// files in (hidden ones and testdata left out).
func trackedFolders(t *testing.T, root string) (top, second []string) {
	t.Helper()
	cmd := exec.Command("git", "ls-files")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout?)", err)
	}
	seen := map[string]bool{}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(f, "/")
		if len(parts) < 2 || strings.HasPrefix(parts[0], ".") {
			continue
		}
		if !seen[parts[0]] {
			seen[parts[0]] = true
			top = append(top, parts[0])
		}
		if len(parts) < 3 || parts[1] == "testdata" {
			continue
		}
		if d := parts[0] + "/" + parts[1]; !seen[d] {
			seen[d] = true
			second = append(second, d)
		}
	}
	return top, second
}

// TestReadmeMatchesFolders: the README's "How it fits together" names every
// top-level and second-level folder, and every path it names exists.
func TestReadmeMatchesFolders(t *testing.T) {
	root := filepath.Join("..", "..")
	rows := fitsTogether(t, filepath.Join(root, "README.md"))
	for _, r := range rows {
		if _, err := os.Stat(filepath.Join(root, r.path)); err != nil {
			t.Errorf("README lists %s, which does not exist: %v", r.path, err)
		}
	}
	top, second := trackedFolders(t, root)
	for _, d := range top {
		if !named(rows, d, "") {
			t.Errorf("README \"How it fits together\" has no row for the folder %s/", d)
		}
	}
	for _, d := range second {
		parent, sub, _ := strings.Cut(d, "/")
		if !named(rows, parent, sub) {
			t.Errorf("README \"How it fits together\" does not name %s: add it to the %s/ row as `%s`", d, parent, sub)
		}
	}
}

// named reports whether rows name the folder parent (sub empty) or its
// subfolder sub: a row of its own, or `sub` (or `sub/...`) in the parent's row.
func named(rows []folderRow, parent, sub string) bool {
	for _, r := range rows {
		if sub == "" {
			if r.path == parent || strings.HasPrefix(r.path, parent+"/") {
				return true
			}
			continue
		}
		if r.path == parent+"/"+sub || strings.HasPrefix(r.path, parent+"/"+sub+"/") {
			return true
		}
		if r.path == parent && (strings.Contains(r.text, "`"+sub+"`") || strings.Contains(r.text, "`"+sub+"/")) {
			return true
		}
	}
	return false
}
