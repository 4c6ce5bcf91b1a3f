package perfevents

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// KallsymsCacheDir holds what LoadKallsymsCached remembers: a tmpfs
// directory, emptied at every boot, as the kernel's addresses change with
// every boot (KASLR). Only root uses it.
var KallsymsCacheDir = "/run/cowtrace"

// kallsymsCache is one cached answer of LoadKallsyms.
type kallsymsCache struct {
	BootID  string   `json:"boot_id"`
	Release string   `json:"release"`
	Want    []string `json:"want"`
	Symbols []Symbol `json:"symbols"`
}

// LoadKallsymsCached is LoadKallsyms(want...) remembered for the rest of the
// boot, as perf keeps its own copy of kallsyms under ~/.debug: the kernel
// takes some 50 ms of CPU to write the 120,000 lines of a distribution
// kernel's kallsyms, the better part of the start-up of `cowtrace run --
// true`. The symbols of the kernel image do not move until the next boot
// (/proc/sys/kernel/random/boot_id tells); a module's can, so an answer
// that names a module's symbol is not remembered, and neither is one with
// hidden addresses. Without root, or where the cache cannot be written, it
// is LoadKallsyms.
func LoadKallsymsCached(want ...string) (*Symbols, error) {
	if os.Geteuid() != 0 || len(want) == 0 {
		return LoadKallsyms(want...)
	}
	want = slices.Sorted(slices.Values(want))
	boot, err := os.ReadFile(filepath.Join(SysfsRoot, "proc/sys/kernel/random/boot_id"))
	if err != nil {
		return LoadKallsyms(want...)
	}
	key := kallsymsCache{BootID: strings.TrimSpace(string(boot)), Release: KernelRelease(), Want: want}
	sum := sha256.Sum256([]byte(strings.Join(want, "\x00")))
	path := filepath.Join(KallsymsCacheDir, "kallsyms-"+hex.EncodeToString(sum[:8])+".json")
	if syms, ok := readKallsymsCache(path, key); ok {
		return syms, nil
	}
	syms, err := LoadKallsyms(want...)
	if err != nil || syms.hidden {
		return syms, err
	}
	for _, list := range syms.byName {
		for _, s := range list {
			if s.Module != "" {
				return syms, nil
			}
			key.Symbols = append(key.Symbols, s)
		}
	}
	// A cache that cannot be written costs only the next run's time.
	_ = writeKallsymsCache(path, key)
	return syms, nil
}

// readKallsymsCache reads the cache at path when root wrote it for this
// boot, kernel and want.
func readKallsymsCache(path string, key kallsymsCache) (*Symbols, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 || st.Mode().Perm()&0o022 != 0 {
		return nil, false
	}
	var c kallsymsCache
	if err := json.NewDecoder(f).Decode(&c); err != nil ||
		c.BootID != key.BootID || c.Release != key.Release || !slices.Equal(c.Want, key.Want) {
		return nil, false
	}
	syms := &Symbols{byName: map[string][]Symbol{}}
	for _, s := range c.Symbols {
		syms.byName[s.Name] = append(syms.byName[s.Name], s)
	}
	return syms, true
}

// writeKallsymsCache writes c to path at once (a temporary file renamed),
// in a directory only root may write.
func writeKallsymsCache(path string, c kallsymsCache) error { return writeCache(path, c) }

// writeCache writes v as JSON to path at once (a temporary file renamed),
// in a directory only root may write.
func writeCache(path string, v any) error {
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() || st.Sys().(*syscall.Stat_t).Uid != 0 || st.Mode().Perm()&0o022 != 0 {
		return errors.New("kallsyms cache: directory not root's alone")
	}
	tmp, err := os.CreateTemp(dir, ".kallsyms-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := json.NewEncoder(tmp).Encode(v); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// cachedAnswer is a yes or no the kernel gave this boot (ExitSampled).
type cachedAnswer struct {
	BootID  string `json:"boot_id"`
	Release string `json:"release"`
	Key     string `json:"key"`
	Answer  bool   `json:"answer"`
}

// rememberAnswer returns what ask answers, asked once a boot: the answer is
// kept in KallsymsCacheDir under name for key (root only).
func rememberAnswer(name, key string, ask func() (bool, error)) (bool, error) {
	boot, err := os.ReadFile(filepath.Join(SysfsRoot, "proc/sys/kernel/random/boot_id"))
	if os.Geteuid() != 0 || err != nil {
		return ask()
	}
	want := cachedAnswer{BootID: strings.TrimSpace(string(boot)), Release: KernelRelease(), Key: key}
	path := filepath.Join(KallsymsCacheDir, name+".json")
	if f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0); err == nil {
		var got cachedAnswer
		st, serr := f.Stat()
		ok := serr == nil && st.Sys().(*syscall.Stat_t).Uid == 0 && st.Mode().Perm()&0o022 == 0 &&
			json.NewDecoder(f).Decode(&got) == nil
		f.Close()
		if ok && got.BootID == want.BootID && got.Release == want.Release && got.Key == want.Key {
			return got.Answer, nil
		}
	}
	answer, err := ask()
	if err != nil {
		return answer, err
	}
	want.Answer = answer
	_ = writeCache(path, want)
	return answer, nil
}
