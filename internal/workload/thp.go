package workload

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotApplicable means that a workload needs something this kernel does not
// have, e.g. transparent huge pages on a kernel built without them. A run of
// such a workload would measure something else than it says, so it is not
// started; the error's text says what is missing.
var ErrNotApplicable = errors.New("not applicable on this kernel")

// errNoTHP is what a huge workload gets on a kernel without THP.
var errNoTHP = fmt.Errorf("%w: built without transparent huge pages", ErrNotApplicable)

// thpDir exists on every kernel built with CONFIG_TRANSPARENT_HUGEPAGE. A
// variable so that tests can point it elsewhere.
var thpDir = "/sys/kernel/mm/transparent_hugepage"

// madvise is unix.Madvise; tests replace it to stand in for a kernel
// without THP, whose madvise knows neither MADV_HUGEPAGE nor
// MADV_NOHUGEPAGE.
var madvise = unix.Madvise

// Applicable says whether c can run on this kernel. When it cannot, the
// error wraps ErrNotApplicable and says why ("not applicable on this kernel:
// built without transparent huge pages"). Start checks it too.
func (c Config) Applicable() error {
	if c.Huge {
		return HugePages()
	}
	return nil
}

// HugePages reports whether the kernel supports transparent huge pages: nil
// if it does, an error wrapping ErrNotApplicable if it was built without
// them. It asks the kernel itself with MADV_HUGEPAGE on a page that is
// mapped and unmapped again, never touched.
func HugePages() error {
	page, err := unix.Mmap(-1, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap a page to ask for huge pages: %w", err)
	}
	defer unix.Munmap(page)
	err = madvise(page, unix.MADV_HUGEPAGE)
	switch {
	case err == nil:
		return nil
	case withoutTHP(err):
		return errNoTHP
	}
	return fmt.Errorf("madvise(MADV_HUGEPAGE): %w", err)
}

// withoutTHP decides whether the error of madvise(MADV_HUGEPAGE or
// MADV_NOHUGEPAGE) on a valid mapping means that the kernel was built
// without transparent huge pages (PREEMPT_RT kernels are: THP depends on
// !PREEMPT_RT). Such a kernel does not know the advice and says EINVAL, the
// errno that bad arguments give too; the missing sysfs directory tells the
// two apart, so a bug of ours is not taken for a kernel without THP.
func withoutTHP(err error) bool {
	if !errors.Is(err, unix.EINVAL) {
		return false
	}
	_, statErr := os.Stat(thpDir)
	return errors.Is(statErr, fs.ErrNotExist)
}
