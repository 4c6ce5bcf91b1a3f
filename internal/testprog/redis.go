package testprog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// Redis is a redis-server of a test's own, on a unix socket in a
// temporary directory, with a client connection to it.
type Redis struct {
	Cmd  *exec.Cmd
	Dir  string
	conn net.Conn
	rd   *bufio.Reader
}

// StartRedis starts Debian's redis-server with no RDB snapshots of its own
// and the append-only file on: writes go to the AOF with write(), and
// nothing forks unless the test asks for a BGSAVE or a BGREWRITEAOF. It is
// killed and waited for when the test ends (and dies with the test binary).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	testenv.Require(t, testenv.Program("redis-server"))
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command("redis-server", "--port", "0", "--unixsocket", sock, "--dir", dir,
		"--save", "", "--appendonly", "yes", "--auto-aof-rewrite-percentage", "0",
		"--enable-debug-command", "local", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &Redis{Cmd: cmd, Dir: dir}
	t.Cleanup(func() {
		if r.conn != nil {
			r.conn.Close()
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("unix", sock)
		if err == nil {
			r.conn, r.rd = c, bufio.NewReader(c)
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server did not listen on %s: %v\n%s", sock, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// Pid is the server's.
func (r *Redis) Pid() int { return r.Cmd.Process.Pid }

// Do sends one command and reads its reply: a string for simple strings,
// bulk strings and integers, an error for an error reply.
func (r *Redis) Do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := r.conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return r.reply()
}

func (r *Redis) reply() (string, error) {
	line, err := r.rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r.rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("reply %q not understood", line)
}

// Must is Do, failing the test on an error.
func (r *Redis) Must(t testing.TB, args ...string) string {
	t.Helper()
	s, err := r.Do(args...)
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	return s
}

// Info reads one field of INFO persistence.
func (r *Redis) Info(t testing.TB, field string) int64 {
	t.Helper()
	for _, line := range strings.Split(r.Must(t, "INFO", "persistence"), "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s: %q", field, v)
			}
			return n
		}
	}
	t.Fatalf("INFO persistence has no %s", field)
	return 0
}

// SetMany overwrites n keys, each one of key:0 to key:keys-1 at random,
// with values of size bytes.
func (r *Redis) SetMany(t testing.TB, keys, n, size int, rng *rand.Rand) {
	t.Helper()
	val := strings.Repeat("w", size)
	for i := 0; i < n; i++ {
		r.Must(t, "SET", "key:"+strconv.Itoa(rng.Intn(keys)), val)
	}
}

// WaitIdle waits up to two minutes until no BGSAVE nor AOF rewrite runs.
func (r *Redis) WaitIdle(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); r.Info(t, "rdb_bgsave_in_progress") == 1 || r.Info(t, "aof_rewrite_in_progress") == 1; {
		if time.Now().After(deadline) {
			t.Fatal("a BGSAVE or AOF rewrite still running after 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
