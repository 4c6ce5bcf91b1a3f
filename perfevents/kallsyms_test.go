package perfevents

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

func fixtureKallsyms(t *testing.T, file string, want ...string) *Symbols {
	t.Helper()
	f, err := os.Open("testdata/kallsyms/" + file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := ParseKallsyms(f, want...)
	if err != nil {
		t.Fatal(err)
	}
	return syms
}

func symNames(syms []Symbol) string {
	var names []string
	for _, s := range syms {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

func TestParseKallsymsFixture(t *testing.T) {
	syms := fixtureKallsyms(t, "kallsyms")
	if syms.AddressesHidden() {
		t.Error("AddressesHidden with real addresses")
	}

	got, ok := syms.Lookup("do_wp_page")
	// Its extent runs to the next line's address, NF_HOOK.constprop.0's.
	if want := (Symbol{Name: "do_wp_page", Addr: 0xffffffff815fbb60, Type: 't', Size: 0xffffffff82166470 - 0xffffffff815fbb60}); !ok || got != want {
		t.Errorf("Lookup(do_wp_page) = %+v, %v; want %+v", got, ok, want)
	}
	all := syms.All("do_wp_page")
	if !got.Contains(0xffffffff815fbb61) || got.Contains(0xffffffff82166470) || got.Contains(0xffffffff815fbb5f) {
		t.Errorf("do_wp_page's extent %#x+%#x", got.Addr, got.Size)
	}
	if len(all) != 2 || all[1].Module != "fakemod" || all[1].Addr != 0xffffffffc0300010 {
		t.Errorf("All(do_wp_page) = %+v; want the kernel's and fakemod's", all)
	}
	if got := syms.All("__cpuid"); len(got) != 2 || got[0].Addr == got[1].Addr {
		t.Errorf("All(__cpuid) = %+v; want two static functions", got)
	}

	// The data symbol comes first in the file; Lookup wants code.
	if got, ok := syms.Lookup("wp_page_copy"); !ok || got.Type != 't' || got.Addr != 0xffffffff82500040 {
		t.Errorf("Lookup(wp_page_copy) = %+v, %v; want the text symbol", got, ok)
	}
	if got, ok := syms.Lookup("__start_rodata"); !ok || got.IsText() {
		t.Errorf("Lookup(__start_rodata) = %+v, %v; want the data symbol", got, ok)
	}
	if got, ok := syms.Lookup("copy_page"); !ok || !got.IsText() || got.Type != 'T' {
		t.Errorf("Lookup(copy_page) = %+v, %v", got, ok)
	}
	if got, ok := syms.Lookup("ftrace_trampoline"); !ok || got.Module != "__builtin__ftrace" {
		t.Errorf("Lookup(ftrace_trampoline) = %+v, %v", got, ok)
	}
	if _, ok := syms.Lookup("no_such_function"); ok {
		t.Error("Lookup of a missing name succeeded")
	}

	if got := symNames(syms.Variants("calibrate_delay")); got != "calibrate_delay.cold" {
		t.Errorf("Variants(calibrate_delay) = %s", got)
	}
	if got := symNames(syms.Variants("NF_HOOK")); got != "NF_HOOK.constprop.0,NF_HOOK.constprop.0" {
		t.Errorf("Variants(NF_HOOK) = %s", got)
	}
	if got := syms.Variants("do_wp_page"); len(got) != 0 {
		t.Errorf("Variants(do_wp_page) = %+v, want none", got)
	}

	// All returns a copy.
	all[0].Name = "scribbled"
	if got, _ := syms.Lookup("do_wp_page"); got.Name != "do_wp_page" {
		t.Error("modifying All's result changed the table")
	}
}

func TestParseKallsymsWant(t *testing.T) {
	syms := fixtureKallsyms(t, "kallsyms", "do_wp_page", "calibrate_delay", "absent")
	if got := symNames(syms.All("do_wp_page")); got != "do_wp_page,do_wp_page" {
		t.Errorf("All(do_wp_page) = %s", got)
	}
	if _, ok := syms.Lookup("calibrate_delay"); !ok {
		t.Error("wanted calibrate_delay missing")
	}
	if got := symNames(syms.Variants("calibrate_delay")); got != "calibrate_delay.cold" {
		t.Errorf("variants of a wanted name are kept: Variants(calibrate_delay) = %s", got)
	}
	for _, name := range []string{"copy_page", "__pfx_do_wp_page", "absent", "NF_HOOK.constprop.0"} {
		if _, ok := syms.Lookup(name); ok {
			t.Errorf("Lookup(%s) succeeded though not wanted (or absent)", name)
		}
	}
}

func TestParseKallsymsHidden(t *testing.T) {
	// What a reader without CAP_SYSLOG sees with kptr_restrict=1.
	syms := fixtureKallsyms(t, "kallsyms-hidden")
	if !syms.AddressesHidden() {
		t.Error("all-zero addresses not reported as hidden")
	}
	if got, ok := syms.Lookup("do_wp_page"); !ok || got.Addr != 0 || !got.IsText() {
		t.Errorf("Lookup(do_wp_page) = %+v, %v", got, ok)
	}
	// Hidden is judged on every line, not only on the wanted ones.
	if !fixtureKallsyms(t, "kallsyms-hidden", "copy_page").AddressesHidden() {
		t.Error("AddressesHidden false with want")
	}
	if fixtureKallsyms(t, "kallsyms", "absent").AddressesHidden() {
		t.Error("AddressesHidden true with real addresses and nothing kept")
	}
}

func TestParseKallsymsMalformed(t *testing.T) {
	for _, bad := range []string{
		"zzz\n",
		"ffffffff81000000 T\n",
		"ffffffff81000000T foo\n",
		"xyz T foo\n",
		"ffffffff81000000 T \n",
		"ffffffff81000000 T foo\n" + strings.Repeat("a", 300<<10) + "\n",
	} {
		if _, err := ParseKallsyms(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseKallsyms(%.40q) succeeded", bad)
		}
	}
	// A bad address on a line nobody wants is not worth an error.
	if _, err := ParseKallsyms(strings.NewReader("xyz T foo\nffffffff81000000 T bar"), "bar"); err != nil {
		t.Errorf("unwanted bad line: %v", err)
	}
	syms, err := ParseKallsyms(strings.NewReader(""))
	if err != nil || syms.AddressesHidden() {
		t.Errorf("empty input: %v, hidden %v", err, syms.AddressesHidden())
	}
	// No newline at the end.
	syms, err = ParseKallsyms(strings.NewReader("ffffffff81000000 T _stext"))
	if _, ok := syms.Lookup("_stext"); err != nil || !ok {
		t.Errorf("last line without newline: %v, found %v", err, ok)
	}
}

func TestLoadKallsymsFakeRoot(t *testing.T) {
	defer func(old string) { SysfsRoot = old }(SysfsRoot)
	SysfsRoot = "testdata/sysfs/debian-6.12"
	syms, err := LoadKallsyms("do_wp_page")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := syms.Lookup("do_wp_page"); !ok || !syms.AddressesHidden() {
		t.Errorf("Lookup ok %v, hidden %v; want true, true", ok, syms.AddressesHidden())
	}
}

func TestLoadKallsymsRealKernel(t *testing.T) {
	testenv.Require(t, testenv.Path("/proc/kallsyms"))
	syms, err := LoadKallsyms("do_wp_page", "copy_page")
	if err != nil {
		t.Fatal(err)
	}
	wp, ok := syms.Lookup("do_wp_page")
	if !ok || !wp.IsText() {
		t.Errorf("Lookup(do_wp_page) = %+v, %v; want a text symbol", wp, ok)
	}
	if cp, ok := syms.Lookup("copy_page"); !ok {
		t.Errorf("Lookup(copy_page) = %+v, %v", cp, ok)
	}

	b, err := os.ReadFile("/proc/sys/kernel/kptr_restrict")
	if err == nil && testenv.Root() == "" && strings.TrimSpace(string(b)) != "2" {
		if syms.AddressesHidden() || wp.Addr == 0 {
			t.Errorf("root with kptr_restrict=%s: hidden %v, do_wp_page at %#x; want real addresses",
				strings.TrimSpace(string(b)), syms.AddressesHidden(), wp.Addr)
		}
	}
}

// BenchmarkLoadKallsyms measures reading the real /proc/kallsyms, whole and
// for two names.
func BenchmarkLoadKallsyms(b *testing.B) {
	if _, err := os.Stat("/proc/kallsyms"); err != nil {
		b.Skipf("no /proc/kallsyms: %v", err)
	}
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := LoadKallsyms(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("want2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := LoadKallsyms("do_wp_page", "copy_page"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestKallsymsHidden: hidden addresses are told from the first text symbol,
// not from the per-CPU symbols at 0 that come first on Linux 5.10.
func TestKallsymsHidden(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		hidden     bool
	}{
		{"6.18", "ffffffff81000000 T srso_alias_untrain_ret\nffffffff81000000 T _stext\n", false},
		{"5.10", "0000000000000000 A fixed_percpu_data\n0000000000001000 A cpu_debug_store\nffffffff81000000 T startup_64\n", false},
		{"kptr_restrict", "0000000000000000 A fixed_percpu_data\n0000000000000000 T startup_64\n", true},
	} {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "proc", "kallsyms"), []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		withSysfsRoot(t, root)
		if got, err := KallsymsHidden(); err != nil || got != tc.hidden {
			t.Errorf("%s: KallsymsHidden() = %v, %v; want %v", tc.name, got, err, tc.hidden)
		}
	}
}
