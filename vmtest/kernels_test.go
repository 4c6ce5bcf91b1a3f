package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseDepends(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      []string
	}{
		{"meta", "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", []string{"linux-image-6.1.0-56-amd64"}},
		{"plus in name", "linux-image-6.12-amd64\n  Depends: linux-image-6.12.117+deb12-amd64\n", []string{"linux-image-6.12.117+deb12-amd64"}},
		{
			"alternatives, virtuals and other packages",
			"linux-image-amd64\n |Depends: linux-image-6.1.0-55-amd64\n  Depends: <linux-image-virtual>\n  Depends: linux-image-6.1.0-56-amd64\n  Recommends: firmware-linux-free\n  Depends: initramfs-tools\n",
			[]string{"linux-image-6.1.0-56-amd64"},
		},
		{"unknown package", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseDepends(tc.out); !slices.Equal(got, tc.want) {
				t.Errorf("parseDepends = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCachedImageKeepsSeriesApart(t *testing.T) {
	cache := t.TempDir()
	for _, pkg := range []string{"linux-image-6.1.0-9-amd64", "linux-image-6.1.0-56-amd64", "linux-image-6.1.0-57-rt-amd64",
		"linux-image-6.12.117+deb12-amd64", "linux-image-6.12.118+deb13-amd64", "linux-binary-7.3.4+deb13-amd64", "linux-image-7.3.4+deb13-amd64",
		"linux-image-5.10.0-46-amd64", "linux-image-6.1.0-57-arm64"} {
		dir := filepath.Join(cache, "kernels", pkg)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "vmlinuz-x"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A download cut short must not be taken for a kernel.
	if err := os.WriteFile(filepath.Join(cache, "kernels", "linux-image-6.12.118+deb13-amd64", "vmlinuz-y.part"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"5.10":         "linux-image-5.10.0-46-amd64",
		"6.1":          "linux-image-6.1.0-56-amd64",
		"6.1-rt":       "linux-image-6.1.0-57-rt-amd64",
		"6.1-lockdown": "linux-image-6.1.0-56-amd64",
		"6.12":         "linux-image-6.12.118+deb13-amd64",
		"7.3":          "linux-binary-7.3.4+deb13-amd64",
		"6.1-arm64":    "linux-image-6.1.0-57-arm64",
	} {
		sp, ok := lookupSpec(name)
		if !ok {
			t.Fatalf("no spec %s", name)
		}
		vm, err := cachedImage(cache, sp.Image)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := filepath.Base(filepath.Dir(vm)); got != want || filepath.Base(vm) != "vmlinuz-x" {
			t.Errorf("%s: %s, want %s/vmlinuz-x", name, vm, want)
		}
	}
	sp, _ := lookupSpec("6.1")
	if _, err := cachedImage(t.TempDir(), sp.Image); err == nil {
		t.Error("empty cache: no error")
	}
}

// TestSpecs: every boot of the matrix says what it expects, and the names
// that the cache fallback matches belong to one series each.
func TestSpecs(t *testing.T) {
	seen := map[string]bool{}
	for _, sp := range specs {
		if seen[sp.Name] {
			t.Errorf("%s twice", sp.Name)
		}
		seen[sp.Name] = true
		if sp.Arch == "" || sp.Suite == "" || sp.Meta == "" || sp.Layout.Package == "" || sp.Layout.Path == "" || sp.Image == nil || sp.About == "" {
			t.Errorf("%s: incomplete: %+v", sp.Name, sp)
		}
		switch sp.Expect.Copies {
		case methodKprobe, methodCallchain, methodNone:
		default:
			t.Errorf("%s: copies by %q", sp.Name, sp.Expect.Copies)
		}
		if sp.Expect.Faults != faultsTracepoint && sp.Expect.Faults != faultsAddress {
			t.Errorf("%s: faults by %q", sp.Name, sp.Expect.Faults)
		}
		if sp.Expect.Kprobes != (sp.Expect.Copies != methodNone) && sp.Expect.Lockdown == "none" {
			t.Errorf("%s: kprobes %v with copies by %s", sp.Name, sp.Expect.Kprobes, sp.Expect.Copies)
		}
		if sp.Expect.Lockdown == "" {
			t.Errorf("%s: no lockdown mode", sp.Name)
		}
		switch sp.Expect.CountMethod {
		case countExitTracepoint, countExitSyscall, countClassify:
		default:
			t.Errorf("%s: count method %q", sp.Name, sp.Expect.CountMethod)
		}
	}
	if sp, _ := lookupSpec("6.1"); sp.Image.MatchString("linux-image-6.1.0-57-rt-amd64") {
		t.Error("6.1 takes the rt image")
	}
}
