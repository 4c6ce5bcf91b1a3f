package testprog

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// postgresBin is the directory of PostgreSQL's server programs: initdb's
// in $PATH, else Debian's /usr/lib/postgresql/VERSION/bin (the newest),
// which Debian leaves out of $PATH; "" when there is none.
func postgresBin() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(a, b int) bool {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[a])))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[b])))
		return va < vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// PostgreSQL: the server programs and the postgres user they run as (the
// server refuses to run as root), as Debian's postgresql package installs.
func PostgreSQL() string {
	if postgresBin() == "" {
		return "PostgreSQL's initdb (apt-get install postgresql)"
	}
	if _, _, err := postgresUser(); err != nil {
		return "the postgres user (apt-get install postgresql)"
	}
	return ""
}

// postgresUser is the postgres user's uid and gid, from /etc/passwd, where
// Debian's package adds it. Not os/user: it links cgo into every test
// binary that imports testenv, and the experiment's worker, which is that
// binary, then behaves otherwise (its reads of untouched memory get pages
// of their own rather than the zero page, which the zero-page scenario
// tells).
func postgresUser() (uid, gid uint32, err error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 || f[0] != "postgres" {
			continue
		}
		u, err1 := strconv.ParseUint(f[2], 10, 32)
		g, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("/etc/passwd: %q", line)
		}
		return uint32(u), uint32(g), nil
	}
	return 0, 0, fmt.Errorf("no postgres user in /etc/passwd")
}

// Postgres is a PostgreSQL cluster of a test's own: a data directory made
// by initdb and a postmaster listening on a unix socket only, in a
// temporary directory.
type Postgres struct {
	Bin, Dir, Sock string
	Cmd            *exec.Cmd // the postmaster
	cred           *syscall.Credential
}

// Pid is the postmaster's.
func (p *Postgres) Pid() int { return p.Cmd.Process.Pid }

// StartPostgres makes a cluster (initdb -A trust) and starts its
// postmaster with settings (NAME=VALUE each) on top of no TCP port and a
// unix socket in the cluster's directory. The postmaster is the test's own
// child rather than pg_ctl's daemon, so that it dies with the test binary
// (Pdeathsig) and is stopped and waited for when the test ends.
func StartPostgres(t testing.TB, settings ...string) *Postgres {
	t.Helper()
	testenv.Require(t, testenv.Root, PostgreSQL)
	uid, gid, err := postgresUser()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parent is the test's, mode 0700 and root's.
	dir, err := os.MkdirTemp("", "cowtrace-postgres-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	p := &Postgres{Bin: postgresBin(), Dir: dir, Sock: dir, cred: &syscall.Credential{Uid: uid, Gid: gid}}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(p.Bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	args := []string{"-D", data, "-k", dir, "-c", "listen_addresses="}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(p.Bin, "postgres"), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd = cmd
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// SIGINT: PostgreSQL's fast shutdown, which ends the backends.
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := p.psql("SELECT 1").CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "1" {
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("postgres exited at its start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("postgres did not answer on %s: %v %s\n%s", dir, err, out, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// psql is a psql command that runs sql on its own connection: the
// postmaster forks a backend for it, which exits when psql does.
func (p *Postgres) psql(sql ...string) *exec.Cmd {
	args := []string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", p.Sock, "-U", "postgres", "-d", "postgres"}
	for _, s := range sql {
		args = append(args, "-c", s)
	}
	return exec.Command(filepath.Join(p.Bin, "psql"), args...)
}

// Query runs sql on a connection of its own, and returns what it printed.
func (p *Postgres) Query(t testing.TB, sql string) string {
	t.Helper()
	out, err := p.psql(sql).CombinedOutput()
	if err != nil {
		t.Fatalf("psql -c %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Session is a connection held open: a psql reading its commands from a
// pipe, and the backend that serves it.
type Session struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	// Backend is the pid of the backend process.
	Backend int
}

// Connect opens a session.
func (p *Postgres) Connect(t testing.TB) *Session {
	t.Helper()
	cmd := p.psql()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Session{cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(func() {
		s.in.Close()
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	pid, err := strconv.Atoi(s.Query(t, "SELECT pg_backend_pid()"))
	if err != nil {
		t.Fatalf("pg_backend_pid: %v", err)
	}
	s.Backend = pid
	return s
}

// Query runs sql in the session, and returns what psql printed for it.
func (s *Session) Query(t testing.TB, sql string) string {
	t.Helper()
	const done = "-- cowtrace: done --"
	if _, err := fmt.Fprintf(s.in, "%s;\n\\echo '%s'\n", sql, done); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for {
		line, err := s.out.ReadString('\n')
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, b.String())
		}
		if strings.TrimSpace(line) == done {
			return strings.TrimSpace(b.String())
		}
		b.WriteString(line)
	}
}

// Close ends the session: psql quits, and its backend exits.
func (s *Session) Close(t testing.TB) {
	t.Helper()
	s.in.Close()
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("psql: %v", err)
	}
}
