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
	for _, pkg := range []string{"linux-image-6.1.0-9-amd64", "linux-image-6.1.0-56-amd64", "linux-image-6.12.117+deb12-amd64"} {
		dir := filepath.Join(cache, "kernels", pkg)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "vmlinuz-x"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A download cut short must not be taken for a kernel.
	if err := os.WriteFile(filepath.Join(cache, "kernels", "linux-image-6.12.117+deb12-amd64", "vmlinuz-y.part"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]string{
		"6.1":  "linux-image-6.1.0-56-amd64",
		"6.12": "linux-image-6.12.117+deb12-amd64",
	} {
		vm, err := cachedImage(cache, series)
		if err != nil {
			t.Fatalf("%s: %v", series, err)
		}
		if got := filepath.Base(filepath.Dir(vm)); got != want || filepath.Base(vm) != "vmlinuz-x" {
			t.Errorf("%s: %s, want %s/vmlinuz-x", series, vm, want)
		}
	}
	if _, err := cachedImage(t.TempDir(), "6.1"); err == nil {
		t.Error("empty cache: no error")
	}
}
