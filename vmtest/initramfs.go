package main

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// cpioWriter writes the "newc" cpio format, the one the kernel unpacks as
// an initramfs. Writing it here keeps cpio(1) off the list of host tools.
type cpioWriter struct {
	w   io.Writer
	n   int64
	ino uint32
	err error
}

func newCpioWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

func (c *cpioWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) header(name string, mode uint32, size int64, rdevMajor, rdevMinor uint32) {
	if c.err == nil && size > 0xffffffff {
		c.err = fmt.Errorf("cpio: %s: %d bytes is too large for newc", name, size)
	}
	nlink := uint32(1)
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize,
	// devmajor, devminor, rdevmajor, rdevminor, namesize, check.
	// mtime stays 0 so that the same inputs give the same archive.
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.ino++
	c.write([]byte(h))
	c.write([]byte(name + "\x00"))
	c.pad()
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// Dir adds a directory; parents must have been added first.
func (c *cpioWriter) Dir(name string, perm os.FileMode) error {
	c.header(cleanName(name), syscall.S_IFDIR|uint32(perm.Perm()), 0, 0, 0)
	return c.err
}

// File adds a regular file of size bytes read from r.
func (c *cpioWriter) File(name string, perm os.FileMode, size int64, r io.Reader) error {
	c.header(cleanName(name), syscall.S_IFREG|uint32(perm.Perm()), size, 0, 0)
	if c.err != nil {
		return c.err
	}
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	c.n += n
	if err == nil && n != size {
		err = fmt.Errorf("cpio: %s: got %d of %d bytes", name, n, size)
	}
	if err != nil {
		c.err = err
		return err
	}
	c.pad()
	return c.err
}

// Bytes adds a regular file with the given contents.
func (c *cpioWriter) Bytes(name string, perm os.FileMode, b []byte) error {
	return c.File(name, perm, int64(len(b)), strings.NewReader(string(b)))
}

// Symlink adds a symbolic link to target.
func (c *cpioWriter) Symlink(name, target string) error {
	c.header(cleanName(name), syscall.S_IFLNK|0o777, int64(len(target)), 0, 0)
	c.write([]byte(target))
	c.pad()
	return c.err
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm os.FileMode, major, minor uint32) error {
	c.header(cleanName(name), syscall.S_IFCHR|uint32(perm.Perm()), 0, major, minor)
	return c.err
}

// Close writes the trailer; it does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	return c.err
}

// initramfsFile is one host file to put into the initramfs; with Link set,
// Dst is a symbolic link to Link instead.
type initramfsFile struct {
	Src, Dst string
	Perm     os.FileMode
	Link     string
	// For names the one command that needs the file, so that guests not
	// running it do without; "" for a file every guest gets.
	For string
}

// writeInitramfs writes a gzip'd newc archive with the given files and
// extra in-memory files, creating every parent directory. /dev/console is
// included because the kernel opens it for init's stdio before init could
// mount devtmpfs.
func writeInitramfs(dst string, files []initramfsFile, extra map[string][]byte) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	gz, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := writeArchive(newCpioWriter(gz), files, extra); err != nil {
		return err
	}
	return gz.Close()
}

// writeArchive writes /dev/console, then files and extra (by name), each
// after the parent directories not yet written, then the trailer.
func writeArchive(c *cpioWriter, files []initramfsFile, extra map[string][]byte) error {
	if err := c.Dir("dev", 0o755); err != nil {
		return err
	}
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	dirs := parentDirs{c: c, made: map[string]bool{"dev": true}}
	for _, fl := range files {
		if err := dirs.write(fl.Dst); err != nil {
			return err
		}
		if fl.Link != "" {
			if err := c.Symlink(fl.Dst, fl.Link); err != nil {
				return err
			}
			continue
		}
		if err := addHostFile(c, fl); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		if err := dirs.write(name); err != nil {
			return err
		}
		if err := c.Bytes(name, 0o644, extra[name]); err != nil {
			return err
		}
	}
	return c.Close()
}

// parentDirs writes the directories above a file into the archive, each
// once and before what it holds.
type parentDirs struct {
	c    *cpioWriter
	made map[string]bool
}

func (d *parentDirs) write(name string) error {
	var parts []string
	for p := path.Dir(cleanName(name)); p != "." && p != "/" && !d.made[p]; p = path.Dir(p) {
		parts = append(parts, p)
	}
	for i := len(parts) - 1; i >= 0; i-- {
		d.made[parts[i]] = true
		if err := d.c.Dir(parts[i], 0o755); err != nil {
			return err
		}
	}
	return nil
}

func addHostFile(c *cpioWriter, fl initramfsFile) error {
	in, err := os.Open(fl.Src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New(fl.Src + ": not a regular file")
	}
	perm := fl.Perm
	if perm == 0 {
		perm = st.Mode().Perm()
	}
	return c.File(fl.Dst, perm, st.Size(), in)
}

// treeFiles lists the regular files under dir (for a package's testdata),
// placed under dstDir.
func treeFiles(dir, dstDir string) ([]initramfsFile, error) {
	var out []initramfsFile
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, initramfsFile{Src: p, Dst: path.Join(dstDir, filepath.ToSlash(rel))})
		return nil
	})
	return out, err
}
