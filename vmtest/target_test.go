package main

import (
	"testing"
	"time"
)

func TestTargetWeights(t *testing.T) {
	arm, amd := targets["arm64"], targets["amd64"]
	if got, want := arm.weight("matrix"), weightOf("matrix")*3/2; got != want {
		t.Errorf("arm64 matrix weight %v, want %v", got, want)
	}
	if got := amd.weight("matrix"); got != weightOf("matrix") {
		t.Errorf("amd64 weight %v", got)
	}
	if arm.BootCost < bootCost || arm.BootCost > time.Minute {
		t.Errorf("arm64 boot cost %v", arm.BootCost)
	}
}

// TestTargets: every target says how to build for it and boot it, and
// every boot of the matrix names one.
func TestTargets(t *testing.T) {
	for arch, tg := range targets {
		if tg.Arch != arch || tg.GOARCH == "" || tg.Qemu == "" || tg.QemuPackage == "" || tg.CPU == "" || tg.TTY == "" ||
			tg.CC == "" || tg.CCPackages == "" || tg.Scale <= 0 || tg.BootCost <= 0 {
			t.Errorf("%s: incomplete: %+v", arch, tg)
		}
	}
	for _, sp := range specs {
		if _, err := lookupTarget(sp.Arch); err != nil {
			t.Errorf("%s: %v", sp.Name, err)
		}
	}
	if _, err := lookupTarget("mips"); err == nil {
		t.Error("mips: no error")
	}
}
