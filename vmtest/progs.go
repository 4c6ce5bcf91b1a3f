package main

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// testProgs are the C programs of testdata/ that `cowtrace run` is pointed at
// in the guests, and that the follow and cmd/cowtrace tests trace. The
// initramfs has neither a compiler nor a libc, so they are built here,
// statically, and the tests find them through progsEnv.
var testProgs = []string{"cow_seed", "cow_tree", "cow_fork_later", "cow_swap"}

const (
	progsDir = "/progs"
	// progsEnv names the directory of prebuilt programs for the tests
	// (follow and cmd/cowtrace look there before compiling with gcc).
	progsEnv = "COWTRACE_TESTPROGS"
)

// buildProgs compiles testProgs with cc -static (gcc, or a cross compiler
// for the guest's architecture), which Debian's pkgs install. Without it or
// a static libc it returns no files and the reason, so that the rest of
// the matrix still runs.
func buildProgs(ctx context.Context, root, bin, cc, pkgs string) ([]initramfsFile, string, error) {
	gcc, err := exec.LookPath(cc)
	if err != nil {
		return nil, cc + " is not installed (apt-get install " + pkgs + ")", nil
	}
	dir := filepath.Join(bin, "progs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	var files []initramfsFile
	for _, name := range testProgs {
		src := filepath.Join(root, "testdata", name+".c")
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Sprintf("testdata/%s.c: %v", name, err), nil
		}
		out := filepath.Join(dir, name)
		b, err := exec.CommandContext(ctx, gcc, "-static", "-O2", "-Wall", "-o", out, src).CombinedOutput()
		if err != nil {
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			msg := strings.TrimSpace(string(b))
			if strings.Contains(msg, "cannot find -lc") {
				return nil, "no static libc for " + cc + " -static (" + pkgs + ": libc.a is missing)", nil
			}
			return nil, "", errors.New(cc + " -static " + name + ": " + err.Error() + "\n" + msg)
		}
		files = append(files, initramfsFile{Src: out, Dst: progsDir + "/" + name, Perm: 0o755})
	}
	return files, "", nil
}

// busyboxApplets are the commands that tests start as ordinary programs
// (a shell, a process that sleeps, one that exits at once, id for the
// sudo test); without them those tests skip in the guest.
var busyboxApplets = []string{"sh", "true", "sleep", "id"}

// busybox puts a static busybox into /bin with a link per applet, or
// says why not: the one at bb, or the one on the PATH when bb is "".
func busybox(bb string) ([]initramfsFile, string) {
	if bb == "" {
		var err error
		if bb, err = exec.LookPath("busybox"); err != nil {
			return nil, "no busybox (apt-get install busybox-static): tests that start sh, true, sleep or id skip in the guests"
		}
	}
	if !isStatic(bb) {
		return nil, bb + " is not static (apt-get install busybox-static): tests that start sh, true, sleep or id skip in the guests"
	}
	files := []initramfsFile{{Src: bb, Dst: "bin/busybox", Perm: 0o755}}
	for _, a := range busyboxApplets {
		files = append(files, initramfsFile{Dst: "bin/" + a, Link: "busybox"})
	}
	return files, ""
}

// isStatic says whether the ELF file at p asks for no program interpreter,
// as a binary must in an initramfs without a libc.
func isStatic(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, ph := range f.Progs {
		if ph.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
