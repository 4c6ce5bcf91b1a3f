package main

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// target is an architecture of the guests: how everything in their
// initramfs is built, which qemu runs them, where their busybox comes from
// and how long their commands take. A boot of the matrix names its target
// by Arch (kernels.go); an architecture is added by adding it to targets.
type target struct {
	// Arch is Debian's name of the architecture: the kernel and busybox
	// packages are fetched for it, and vmtest's files for it carry it.
	Arch        string
	GOARCH      string
	Qemu        string
	QemuPackage string // the Debian package that installs Qemu
	Machine     string // qemu -M, "" for qemu's default
	CPU         string // qemu -cpu
	TTY         string // the kernel's serial console
	// CC links static binaries for the guest (the C programs of
	// testdata/); CCPackages are the Debian packages of it and its libc.
	CC         string
	CCPackages string
	// BusyboxSuite is the Debian suite whose busybox-static (of Arch) the
	// guests get; "" takes the host's own from the PATH, which only a
	// target of the host's architecture can run.
	BusyboxSuite string
	// Scale is a command's guest time against an amd64 guest's (the
	// weights of shard.go are measured there); BootCost the guest's time
	// outside its commands.
	Scale    float64
	BootCost time.Duration
}

// arm64CPU is qemu's newest arm64 CPU with a cheap pointer-authentication
// hash: Debian's kernel signs every return address, and TCG's emulation of
// the architected QARMA cipher made the same guest five times slower
// (touched, blocks-5000 and run-seed: 64 s against 12 s, boot included).
const arm64CPU = "max,pauth-impdef=on"

var targets = map[string]*target{
	"amd64": {
		Arch: "amd64", GOARCH: "amd64", Qemu: "qemu-system-x86_64", QemuPackage: "qemu-system-x86",
		CPU: "max", TTY: "ttyS0", CC: "gcc", CCPackages: "gcc libc6-dev",
		Scale: 1, BootCost: bootCost,
	},
	// qemu's "virt" board, whose serial port is a PL011 (ttyAMA0). Scale
	// and BootCost were measured under TCG on the project's 2-core x86
	// machine with two guests at once (and the machine shared, load 5-8):
	// the commands took 1 to 3 times their amd64 weights, 1.5 overall, and
	// each guest 5 to 13 s outside them.
	"arm64": {
		Arch: "arm64", GOARCH: "arm64", Qemu: "qemu-system-aarch64", QemuPackage: "qemu-system-arm",
		Machine: "virt", CPU: arm64CPU, TTY: "ttyAMA0", CC: "aarch64-linux-gnu-gcc", CCPackages: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
		BusyboxSuite: "bookworm", Scale: 1.5, BootCost: 12 * time.Second,
	},
}

func lookupTarget(arch string) (*target, error) {
	t := targets[arch]
	if t == nil {
		var have []string
		for a := range targets {
			have = append(have, a)
		}
		sort.Strings(have)
		return nil, fmt.Errorf("no target for architecture %q (have %s)", arch, strings.Join(have, ", "))
	}
	return t, nil
}

// weight is the predicted guest time of a command on t.
func (t *target) weight(name string) time.Duration {
	return time.Duration(float64(weightOf(name)) * t.Scale)
}

// predict is the guest time of shard s on t, boot to power-off.
func (t *target) predict(s *shard) time.Duration { return t.BootCost + s.Load }

// haveQemu says how to install t's qemu when it is missing.
func (t *target) haveQemu() error {
	if _, err := exec.LookPath(t.Qemu); err != nil {
		return fmt.Errorf("%s not found (Debian: apt-get install -y %s): %w", t.Qemu, t.QemuPackage, err)
	}
	return nil
}
