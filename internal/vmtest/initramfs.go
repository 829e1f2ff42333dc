package vmtest

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// entry is one file of the initramfs: either copied from Host or made of
// Data.
type entry struct {
	Name string // path inside the guest, without the leading "/"
	Host string
	Data []byte
	Mode uint64 // permission bits
}

// writeInitramfs writes a newc cpio archive that the kernel unpacks as its
// root: the top-level directories the init mounts over, /dev/console (the
// kernel opens it for init's stdio before anything is mounted), and entries.
func writeInitramfs(out string, entries []entry) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := cpio.Newc.Writer(bw)
	var ino uint64
	next := func(i cpio.Info) cpio.Info {
		ino++
		i.Ino = ino
		i.NLink = 1
		return i
	}
	var recs []cpio.Record
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "vmtest"} {
		r := cpio.Directory(d, 0o755)
		r.Info = next(r.Info)
		recs = append(recs, r)
	}
	con := cpio.CharDev("dev/console", 0o600, 5, 1)
	con.Info = next(con.Info)
	recs = append(recs, con)
	if err := cpio.WriteRecords(w, recs); err != nil {
		return err
	}

	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, e := range entries {
		name := strings.TrimPrefix(path.Clean("/"+e.Name), "/")
		if name == "" {
			return fmt.Errorf("initramfs entry %q has no name", e.Name)
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
		}
		var r cpio.Record
		if e.Host != "" {
			hf, err := os.Open(e.Host)
			if err != nil {
				return err
			}
			files = append(files, hf)
			st, err := hf.Stat()
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return fmt.Errorf("initramfs entry %s: %s is not a regular file", name, e.Host)
			}
			r = cpio.Record{ReaderAt: hf, Info: cpio.Info{
				Name: name, Mode: cpio.S_IFREG | mode, FileSize: uint64(st.Size()),
			}}
		} else {
			r = cpio.StaticRecord(e.Data, cpio.Info{Name: name, Mode: cpio.S_IFREG | mode})
		}
		r.Info = next(r.Info)
		// Parent directories first: the kernel does not create them.
		if err := cpio.WriteRecordsAndDirs(w, []cpio.Record{r}); err != nil {
			return fmt.Errorf("initramfs entry %s: %w", name, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return err
	}
	return bw.Flush()
}

// expandFiles turns Options.Files (guest path → host file or directory)
// into entries, walking directories.
func expandFiles(files map[string]string) ([]entry, error) {
	var out []entry
	for guestPath, host := range files {
		st, err := os.Stat(host)
		if err != nil {
			return nil, fmt.Errorf("vmtest: file for %s: %w", guestPath, err)
		}
		if !st.IsDir() {
			out = append(out, entry{Name: guestPath, Host: host, Mode: uint64(st.Mode().Perm())})
			continue
		}
		err = filepath.WalkDir(host, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, err := filepath.Rel(host, p)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			out = append(out, entry{Name: path.Join(guestPath, filepath.ToSlash(rel)), Host: p, Mode: uint64(info.Mode().Perm())})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("vmtest: files for %s: %w", guestPath, err)
		}
	}
	return out, nil
}
