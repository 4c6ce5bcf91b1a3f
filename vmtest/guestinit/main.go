// Command guestinit is the /init of the vmtest initramfs. It sets up the
// little a Go test binary and cowtrace need (proc, sys, dev, tmp), runs the
// commands of /manifest.json one after another, reports each result as
// framed lines on the serial console and powers the machine off.
//
// It must be built statically (CGO_ENABLED=0): the initramfs has no libc.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// captureLimit bounds what is kept of each stream, so that a runaway
// program cannot fill the guest's memory or the console for minutes.
const captureLimit = 1 << 20

// inspectDir is a private tracefs mount point, outside /sys/kernel/tracing,
// so that looking at tracefs does not change what cowtrace finds there.
const inspectDir = "/vmtest-tracefs"

var symbolsOfInterest = []string{
	"copy_mc_to_kernel", "wp_page_copy", "do_wp_page", "copy_page",
	"folio_copy", "__wp_page_copy_user", "copy_highpage", "copy_user_highpage",
	"do_cow_fault", "do_fault",
}

type console struct {
	mu  sync.Mutex
	w   io.Writer
	seq int
}

func (c *console) send(m guest.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := guest.WriteMessage(c.w, c.seq, m); err != nil {
		fmt.Fprintf(os.Stderr, "guestinit: write frame: %v\n", err)
	}
	c.seq++
}

func main() {
	var errs []string
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		// Where systemd mounts it: the lockdown mode is read there, by
		// this init and by cowtrace doctor.
		{"securityfs", "/sys/kernel/security", "securityfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			errs = append(errs, fmt.Sprintf("mkdir %s: %v", m.dst, err))
			continue
		}
		if err := syscall.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
			errs = append(errs, fmt.Sprintf("mount %s on %s: %v", m.fstype, m.dst, err))
		}
	}
	out := io.Writer(os.Stdout)
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		out = f
	} else {
		errs = append(errs, fmt.Sprintf("open /dev/console: %v", err))
	}
	con := &console{w: out}
	// A panic in PID 1 would panic the kernel and lose the reason; report
	// it as a failed pseudo-command instead and still power off.
	defer func() {
		if r := recover(); r != nil {
			con.send(guest.Message{Kind: "result", Result: &guest.Result{
				Name: "guestinit", ExitCode: -1,
				Err: fmt.Sprintf("panic: %v\n%s", r, debug.Stack()),
			}})
			con.send(guest.Message{Kind: "done", Sent: -1})
		}
		poweroff()
	}()

	info := gatherInfo()
	info.Errors = append(errs, info.Errors...)
	con.send(guest.Message{Kind: "info", Info: info})

	sent := 0
	man, err := readManifest()
	if err != nil {
		con.send(guest.Message{Kind: "result", Result: &guest.Result{Name: "manifest", ExitCode: -1, Err: err.Error()}})
		sent++
	} else {
		for _, c := range man.Commands {
			con.send(guest.Message{Kind: "result", Result: run(c)})
			sent++
		}
	}
	con.send(guest.Message{Kind: "done", Sent: sent})
}

func poweroff() {
	syscall.Sync()
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "guestinit: power off: %v\n", err)
	}
	// Returning from PID 1 panics the kernel; with panic=-1 and qemu's
	// -no-reboot that still ends the run, just less tidily.
	select {}
}

func readManifest() (*guest.Manifest, error) {
	b, err := os.ReadFile(guest.ManifestPath)
	if err != nil {
		return nil, err
	}
	var m guest.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", guest.ManifestPath, err)
	}
	return &m, nil
}

func gatherInfo() *guest.Info {
	info := &guest.Info{KprobePMUType: -1, Symbols: map[string]bool{}, NumCPU: runtime.NumCPU()}
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err == nil {
		info.THP = true
	}
	var u syscall.Utsname
	if err := syscall.Uname(&u); err == nil {
		info.Release = cstr(u.Release[:])
		info.Version = cstr(u.Version[:])
	}
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		info.Cmdline = strings.TrimSpace(string(b))
	}
	// "none integrity [confidentiality]": the selected mode is bracketed.
	if b, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
				info.Lockdown = strings.Trim(f, "[]")
			}
		}
	}
	if b, err := os.ReadFile("/sys/bus/event_source/devices/kprobe/type"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			info.KprobePMUType = n
		}
	}
	st := inspectTracefs()
	if st.Err != "" {
		info.TracefsErr = st.Err
	} else {
		_, err := os.Stat(inspectDir + "/kprobe_events")
		info.KprobeEvents = err == nil
	}
	// Every command starts with tracefs mounted nowhere, as on the CI
	// machine: cowtrace then takes its private mount there.
	_ = syscall.Unmount(inspectDir, 0)
	for _, s := range symbolsOfInterest {
		info.Symbols[s] = false
	}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		info.Errors = append(info.Errors, err.Error())
		return info
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 3 {
			if _, ok := info.Symbols[fs[2]]; ok {
				info.Symbols[fs[2]] = true
			}
		}
	}
	return info
}

func cstr(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// inspectTracefs reads kprobe_events through a private mount; it also
// lists the other tracefs mounts, which tell whether a program that mounted
// tracefs for itself unmounted it again. It leaves inspectDir mounted for
// its caller, which unmounts it.
func inspectTracefs() *guest.TracefsState {
	st := &guest.TracefsState{}
	_ = syscall.Unmount(inspectDir, 0)
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			pre, post, ok := strings.Cut(line, " - ")
			if !ok || !strings.HasPrefix(post, "tracefs ") {
				continue
			}
			if f := strings.Fields(pre); len(f) >= 5 && f[4] != inspectDir {
				st.StillMounted = append(st.StillMounted, f[4])
			}
		}
	}
	if err := os.MkdirAll(inspectDir, 0o755); err != nil {
		st.Err = err.Error()
		return st
	}
	if err := syscall.Mount("nodev", inspectDir, "tracefs", 0, ""); err != nil {
		st.Err = fmt.Sprintf("mount tracefs: %v", err)
		return st
	}
	b, err := os.ReadFile(inspectDir + "/kprobe_events")
	if err != nil {
		st.Err = err.Error()
	}
	st.KprobeEvents = string(b)
	return st
}

// capped keeps the first captureLimit bytes written to it.
type capped struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	truncated bool
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := captureLimit - c.buf.Len()
	if len(p) > room {
		c.truncated = true
		c.buf.Write(p[:max(room, 0)])
	} else {
		c.buf.Write(p)
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func run(c guest.Command) *guest.Result {
	res := &guest.Result{Name: c.Name, Argv: c.Argv, ExitCode: -1}
	if len(c.Argv) == 0 {
		res.Err = "empty argv"
		return res
	}
	cmd := command(c)
	var stdout, stderr capped
	cmd.Stdout = &stdout
	var errPipe io.ReadCloser
	if c.WaitStderr != "" {
		p, err := cmd.StderrPipe()
		if err != nil {
			res.Err = err.Error()
			return res
		}
		errPipe = p
	} else {
		cmd.Stderr = &stderr
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		res.Err = err.Error()
		return res
	}
	var timedOut sync.Once
	timer := time.AfterFunc(c.Timeout, func() {
		timedOut.Do(func() { res.TimedOut = true })
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	if errPipe != nil {
		signalAtLine(res, c, cmd.Process.Pid, errPipe, &stderr)
	}
	err := cmd.Wait()
	timer.Stop()
	timedOut.Do(func() {})
	res.Duration = time.Since(start)
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	res.Truncated = stdout.truncated || stderr.truncated
	recordExit(res, cmd.ProcessState, err)
	if c.InspectTracefs {
		res.Tracefs = inspectTracefs()
		_ = syscall.Unmount(inspectDir, 0)
	}
	return res
}

// command is c's command, in its own process group, so that a timeout
// also kills whatever the program forked, and so that a group signal
// reaches only it.
func command(c guest.Command) *exec.Cmd {
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// signalAtLine copies the command's stderr from pipe into stderr until it
// ends, and sends the command c.Signal at the first line that is
// c.WaitStderr.
func signalAtLine(res *guest.Result, c guest.Command, pid int, pipe io.Reader, stderr *capped) {
	r := bufio.NewReader(pipe)
	for {
		line, err := r.ReadString('\n')
		stderr.Write([]byte(line))
		if !res.WaitLineSeen && strings.TrimRight(line, "\r\n") == c.WaitStderr {
			res.WaitLineSeen = true
			sendSignal(res, pid, syscall.Signal(c.Signal))
		}
		if err != nil {
			break
		}
	}
}

// sendSignal sends sig to the command pid. A negative pid signals the
// whole group, as a terminal's ^C would; a positive one is what `kill PID`
// does.
func sendSignal(res *guest.Result, pid int, sig syscall.Signal) {
	target := pid
	if sig == syscall.SIGINT {
		target = -target
	}
	if err := syscall.Kill(target, sig); err != nil {
		res.Err = fmt.Sprintf("send %v: %v", sig, err)
	} else {
		res.SignalSent = sig.String()
	}
}

// recordExit says how the command ended: its exit code and the signal
// that killed it, or, when it was never waited for, why.
func recordExit(res *guest.Result, ps *os.ProcessState, err error) {
	if ps != nil {
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signaled = ws.Signal().String()
		}
	} else if err != nil {
		res.Err = err.Error()
	}
}
