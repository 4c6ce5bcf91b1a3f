package perfevents

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// TestKallsymsCache: the second load of the same names comes from the
// cache, without kallsyms; another boot, or a module's symbol among the
// answers, reads kallsyms again.
func TestKallsymsCache(t *testing.T) {
	// The cache is root's alone: it holds kernel addresses.
	testenv.Require(t, testenv.Root)
	root, cache := t.TempDir(), t.TempDir()
	oldRoot, oldCache := SysfsRoot, KallsymsCacheDir
	SysfsRoot, KallsymsCacheDir = root, filepath.Join(cache, "cowtrace")
	t.Cleanup(func() { SysfsRoot, KallsymsCacheDir = oldRoot, oldCache })
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/sys/kernel/random/boot_id", "boot-1\n")
	write("proc/kallsyms", "ffffffff81000000 T _stext\nffffffff81001000 T do_wp_page\nffffffff81001400 t wp_page_copy\nffffffff81002000 T other\nffffffffc0000000 t mod_fn\t[mod]\nffffffffc0000100 t mod_end\t[mod]\n")
	first, err := LoadKallsymsCached("do_wp_page", "wp_page_copy")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "proc/kallsyms")); err != nil {
		t.Fatal(err)
	}
	second, err := LoadKallsymsCached("wp_page_copy", "do_wp_page")
	if err != nil {
		t.Fatalf("second load, with kallsyms gone: %v (not from the cache)", err)
	}
	for _, name := range []string{"do_wp_page", "wp_page_copy"} {
		a, _ := first.Lookup(name)
		b, ok := second.Lookup(name)
		if !ok || a != b || b.Size == 0 {
			t.Errorf("%s: %+v from kallsyms, %+v from the cache", name, a, b)
		}
	}
	write("proc/sys/kernel/random/boot_id", "boot-2\n")
	if _, err := LoadKallsymsCached("do_wp_page", "wp_page_copy"); err == nil {
		t.Error("another boot's cache was used")
	}
	write("proc/kallsyms", "ffffffff81000000 T _stext\nffffffffc0000000 t mod_fn\t[mod]\nffffffffc0000100 t mod_end\t[mod]\n")
	if _, err := LoadKallsymsCached("mod_fn"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "proc/kallsyms")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKallsymsCached("mod_fn"); err == nil {
		t.Error("a module's symbol was cached")
	}
}
