package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readNewc is a minimal newc reader for the tests: it checks the layout the
// kernel relies on (magic, 4-byte alignment, trailer) without cpio(1).
func readNewc(t *testing.T, b []byte) map[string]string {
	t.Helper()
	files := map[string]string{}
	off := 0
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off = (off + 110 + namesize + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return files
		}
		switch mode & 0o170000 {
		case 0o100000:
			files[name] = string(b[off : off+size])
		case 0o040000:
			files[name] = "<dir>"
		case 0o120000:
			files[name] = "<link " + string(b[off:off+size]) + ">"
		case 0o020000:
			files[name] = "<chr " + strconv.Itoa(field(9)) + "," + strconv.Itoa(field(10)) + ">"
		}
		off = (off + size + 3) &^ 3
	}
}

func TestCpioLayout(t *testing.T) {
	var buf bytes.Buffer
	c := newCpioWriter(&buf)
	for _, err := range []error{
		c.Dir("bin", 0o755),
		c.Bytes("/bin/a", 0o755, []byte("12345")), // odd length exercises padding
		c.Bytes("bin/bb", 0o644, nil),
		c.CharDev("console", 0o600, 5, 1),
		c.Close(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := readNewc(t, buf.Bytes())
	want := map[string]string{"bin": "<dir>", "bin/a": "12345", "bin/bb": "", "console": "<chr 5,1>"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestWriteInitramfs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "prog")
	if err := os.WriteFile(src, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initrd.gz")
	err := writeInitramfs(out,
		[]initramfsFile{{Src: src, Dst: "init", Perm: 0o755}, {Src: src, Dst: "tests/pkg/testdata/x/y", Perm: 0o644},
			{Dst: "bin/sh", Link: "../init"}},
		map[string][]byte{"/manifest.json": []byte(`{"commands":[]}`)})
	if err != nil {
		t.Fatal(err)
	}
	raw := gunzip(t, out)
	files := readNewc(t, raw)
	for _, name := range []string{"dev", "dev/console", "init", "tests", "tests/pkg", "tests/pkg/testdata", "tests/pkg/testdata/x", "tests/pkg/testdata/x/y", "manifest.json"} {
		if _, ok := files[name]; !ok {
			t.Errorf("%s missing; have %v", name, slices.Sorted(maps.Keys(files)))
		}
	}
	if files["init"] != "#!binary" || files["manifest.json"] != `{"commands":[]}` || files["bin/sh"] != "<link ../init>" {
		t.Errorf("contents: init %q, manifest %q, bin/sh %q", files["init"], files["manifest.json"], files["bin/sh"])
	}

	// The same archive through GNU cpio, where it is installed, so the
	// format is checked against an implementation other than our own.
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed (apt-get install cpio); layout checked by readNewc only")
	}
	x := t.TempDir()
	cmd := exec.Command(cpio, "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = x
	cmd.Stdin = bytes.NewReader(raw)
	// Extracting the device node needs root; listing does not.
	if os.Geteuid() != 0 {
		cmd = exec.Command(cpio, "-t", "--quiet")
		cmd.Stdin = bytes.NewReader(raw)
		list, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		if !strings.Contains(string(list), "tests/pkg/testdata/x/y") {
			t.Errorf("cpio -t lists:\n%s", list)
		}
		return
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(x, "tests/pkg/testdata/x/y"))
	if err != nil || string(b) != "#!binary" {
		t.Errorf("extracted file: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(x, "bin/sh")); err != nil || string(b) != "#!binary" {
		t.Errorf("bin/sh through its link: %q, %v", b, err)
	}
	st, err := os.Stat(filepath.Join(x, "init"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("init: %v, %v", st, err)
	}
	st, err = os.Stat(filepath.Join(x, "dev/console"))
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("dev/console: %v, %v", st, err)
	}
}

func gunzip(t *testing.T, file string) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
