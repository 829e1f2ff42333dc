package derive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// dracutNoISCSI takes the iSCSI support out of the dracut disk's initrd
// (a gzip-compressed newc archive on the boot partition, as Debian's
// dracut 059 writes it): every file whose path names "iscsi" (open-iscsi's
// iscsiadm, iscsid, iscsistart, iscsiroot, its library, units and
// configuration, the iscsi_tcp, libiscsi, scsi_transport_iscsi and
// iscsi_ibft modules, dracut's 95iscsi hooks parse-iscsiroot.sh and
// cleanup-iscsi.sh) is dropped and "iscsi" is struck from
// lib/dracut/modules.txt. Everything else stays byte for byte, so the disk
// is the lab's dracut system whose initrd cannot log in to an iSCSI target,
// as a dracut initrd built without the iscsi module (a host-only initrd of
// an OS installed on a local disk, the common case) cannot. Its
// modules.dep still lists the removed modules: nothing in the initrd loads
// them without an iSCSI root.
func (d *deriver) dracutNoISCSI(ctx context.Context) error {
	name := "initrd.img-" + d.rel
	local := filepath.Join(d.work, name)
	if out, err := run(ctx, "debugfs", "-R", "dump /"+name+" "+local, d.boot); err != nil {
		return fmt.Errorf("dump /%s from the boot partition: %w\n%s", name, err, out)
	}
	old, err := os.ReadFile(local)
	if err != nil || len(old) == 0 {
		return fmt.Errorf("dump /%s from the boot partition: empty or unreadable (%v)", name, err)
	}
	stripped, removed, err := stripISCSI(old)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d.log.Info("removed the initrd's iSCSI files", "files", len(removed), "size", len(old), "new_size", len(stripped))
	out := filepath.Join(d.work, name+".new")
	if err := os.WriteFile(out, stripped, 0o644); err != nil {
		return err
	}
	if err := d.debugfsOn(ctx, d.boot, fmt.Sprintf("rm /%s\nwrite %s /%s\n", name, out, name)); err != nil {
		return err
	}
	d.initrd = out
	d.noISCSI = true
	return nil
}

// stripISCSI rewrites a gzip-compressed newc initrd without its iSCSI
// files (dracutNoISCSI). It refuses anything else: an early uncompressed
// archive or another compression would need more than this.
func stripISCSI(initrd []byte) ([]byte, []string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(initrd))
	if err != nil {
		return nil, nil, fmt.Errorf("not a gzip-compressed initrd: %w", err)
	}
	br := bufio.NewReaderSize(zr, 1<<20)
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.DefaultCompression)
	var removed []string
	sawModules, sawTrailer := false, false
	pos := 0 // bytes read from the archive, for its 4-byte alignment
	skip := func(n int) error {
		_, err := io.CopyN(io.Discard, br, int64(n))
		pos += n
		return err
	}
	written := 0
	write := func(b []byte) {
		zw.Write(b)
		written += len(b)
	}
	pad := func() {
		for written%4 != 0 {
			write([]byte{0})
		}
	}
	for !sawTrailer {
		hdr := make([]byte, 110)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, nil, fmt.Errorf("cpio header at %d: %w", pos, err)
		}
		pos += 110
		if string(hdr[:6]) != "070701" && string(hdr[:6]) != "070702" {
			return nil, nil, fmt.Errorf("cpio header at %d: magic %q, want newc", pos-110, hdr[:6])
		}
		field := func(i int) (int, error) {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			return int(v), err
		}
		size, err1 := field(6)
		nameLen, err2 := field(11)
		if err := errors.Join(err1, err2); err != nil || nameLen == 0 {
			return nil, nil, fmt.Errorf("cpio header at %d: bad size or name length", pos-110)
		}
		nameB := make([]byte, nameLen)
		if _, err := io.ReadFull(br, nameB); err != nil {
			return nil, nil, err
		}
		pos += nameLen
		if err := skip((4 - pos%4) % 4); err != nil {
			return nil, nil, err
		}
		name := strings.TrimSuffix(string(nameB), "\x00")
		data := make([]byte, size)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, nil, fmt.Errorf("cpio %s: %w", name, err)
		}
		pos += size
		if err := skip((4 - pos%4) % 4); err != nil && name != "TRAILER!!!" {
			return nil, nil, err
		}
		sawTrailer = name == "TRAILER!!!"
		if strings.Contains(strings.ToLower(name), "iscsi") {
			removed = append(removed, name)
			continue
		}
		if strings.HasSuffix(name, "lib/dracut/modules.txt") {
			var kept []string
			for _, l := range strings.Split(string(data), "\n") {
				if strings.TrimSpace(l) != "iscsi" {
					kept = append(kept, l)
				}
			}
			data = []byte(strings.Join(kept, "\n"))
			copy(hdr[6+8*6:], fmt.Sprintf("%08x", len(data)))
			sawModules = true
		}
		write(hdr)
		write(nameB)
		pad()
		write(data)
		pad()
	}
	for written%512 != 0 {
		write([]byte{0})
	}
	if err := zw.Close(); err != nil {
		return nil, nil, err
	}
	if !sawModules {
		return nil, nil, errors.New("no lib/dracut/modules.txt: not a dracut initrd")
	}
	if len(removed) == 0 {
		return nil, nil, errors.New("no iSCSI file in the initrd: nothing to remove")
	}
	// Anything after the first archive's trailer (another archive) would
	// be lost: refuse rather than drop it silently.
	rest, err := io.ReadAll(br)
	if err != nil {
		return nil, nil, fmt.Errorf("after the cpio trailer: %w", err)
	}
	if len(bytes.Trim(rest, "\x00")) > 0 {
		return nil, nil, errors.New("the initrd has more than one archive")
	}
	return out.Bytes(), removed, nil
}
