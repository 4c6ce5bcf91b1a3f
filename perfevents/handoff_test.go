package perfevents

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

const handOffHelperEnv = "COWTRACE_HANDOFF_HELPER"

// handOffHelper is the process under test: it opens events, hands them off,
// reports the holder and exits when its stdin closes. A holder lives until
// its creator exits, so the creator cannot be the test binary itself.
func handOffHelper() error {
	if pid, err := HandOff(); err != nil || pid != 0 {
		return fmt.Errorf("HandOff with no event open: holder %d, %v; want 0, nil", pid, err)
	}
	var evs []*Event
	for _, c := range []uint64{PageFaults, MinorFaults, unix.PERF_COUNT_SW_CONTEXT_SWITCHES} {
		ev, err := Open(Attr{Label: "sw", Type: Software, Config: c}, unix.Gettid(), AnyCPU)
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	// A tracepoint too, the kind whose release is slow, when tracefs says
	// where it is.
	if tfs, err := OpenTracefs(); err == nil {
		if id, err := tfs.EventID("exceptions", "page_fault_user"); err == nil {
			ev, err := Open(Attr{Label: "tp", Type: Tracepoint, Config: id}, unix.Gettid(), AnyCPU)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		tfs.Close()
	}
	pid, err := HandOff()
	if err != nil {
		return err
	}
	// Closing after the hand-off drops this process's references only.
	for _, ev := range evs {
		if err := ev.Close(); err != nil {
			return err
		}
	}
	fmt.Printf("holder %d events %d\n", pid, len(evs))
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

func TestHandOff(t *testing.T) {
	if os.Getenv(handOffHelperEnv) == "1" {
		if err := handOffHelper(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testenv.Require(t, testenv.Root)
	// A pipe whose write end the helper inherits as fd 3: the holder must
	// not keep it, or a child waiting for EOF would wait for the holder.
	xr, xw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer xr.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHandOff$")
	cmd.Env = append(os.Environ(), handOffHelperEnv+"=1")
	cmd.ExtraFiles = []*os.File{xw}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	xw.Close()
	defer cmd.Process.Kill()

	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper said nothing: %v", err)
	}
	var holder, events int
	if _, err := fmt.Sscanf(line, "holder %d events %d", &holder, &events); err != nil || holder <= 0 {
		t.Fatalf("helper said %q", line)
	}
	defer unix.Kill(holder, unix.SIGKILL)

	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", holder))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(comm)); got != HolderName {
		t.Errorf("holder is named %q, want %q", got, HolderName)
	}
	// The holder holds the events the helper had open when it handed them
	// off (the helper closed its own copies since), and one pipe: the
	// one whose EOF tells it the helper has exited.
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", holder))
	if err != nil {
		t.Fatal(err)
	}
	perfFDs, pipes, other := 0, 0, []string{}
	for _, e := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", holder, e.Name()))
		switch {
		case link == "anon_inode:[perf_event]":
			perfFDs++
		case strings.HasPrefix(link, "pipe:"):
			pipes++
		default:
			other = append(other, e.Name()+" -> "+link)
		}
	}
	if perfFDs != events || pipes != 1 || len(other) > 0 {
		t.Errorf("holder holds %d perf events (want %d), %d pipes (want 1) and %v (want nothing else)", perfFDs, events, pipes, other)
	}

	// The helper exits; its stdout reaches EOF although the holder lives
	// on (cmd.Wait waits for that EOF), and so does the inherited pipe.
	stdin.Close()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the helper's output did not end when it exited: something still holds its stdout")
	}
	xr.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := xr.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read of the helper's inherited pipe: %d bytes, %v; want EOF", n, err)
	}

	// Then the holder exits, releasing the events.
	deadline := time.Now().Add(30 * time.Second)
	for !processGone(holder) {
		if time.Now().After(deadline) {
			t.Fatalf("holder %d still alive 30 s after the helper exited", holder)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processGone says whether pid has exited: no such process, or a zombie
// nobody reaped yet (a zombie holds no descriptor).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}
