package interop_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/lio"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/scsi"
	"github.com/lunboot/lunboot/qemu/distro/distrotest"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// The example values of docs/targets.md that its LIO commands use.
const (
	pageIQN                = "iqn.2003-01.org.linux-iscsi.san:boot"
	pageFile               = "/srv/iscsi/boot0.img"
	pageSize               = 20 << 30
	pageUser, pageSecret   = "node1", "node1-secret-123"
	pageTUser, pageTSecret = "san", "san-secret-456"
)

// pageCommands returns the commands of docs/targets.md's LIO section (the
// backing file's mkdir and truncate, then targetcli): the lines of its
// first ```sh block, comments and blank lines left out.
func pageCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "targets.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## LIO")
	if !ok {
		t.Fatal("docs/targets.md has no ## LIO section")
	}
	_, block, ok := strings.Cut(sec, "```sh\n")
	if !ok {
		t.Fatal("docs/targets.md's LIO section has no ```sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	var cmds []string
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "targetcli ") && !strings.HasPrefix(line, "mkdir ") && !strings.HasPrefix(line, "truncate ") {
			t.Fatalf("docs/targets.md's LIO block has a line that is neither targetcli nor the backing file's mkdir/truncate: %q", line)
		}
		cmds = append(cmds, line)
	}
	if n := len(cmds); n < 5 {
		t.Fatalf("docs/targets.md's LIO block: only %d commands", n)
	}
	return cmds
}

// pageConfig is the same export written by the lab's own configfs writer
// (internal/lio): the page's target, TPG 1 on targetcli's default portal
// (0.0.0.0:3260, made by "iscsi create"), the file as LUN 0, one ACL with
// CHAP and mutual CHAP, authentication=1.
func pageConfig() lio.Target {
	return lio.Target{IQN: pageIQN, TPGs: []lio.TPG{{
		Tag:     1,
		Portals: []string{"0.0.0.0:3260"},
		Attrib:  map[string]string{"authentication": "1"},
		LUNs:    []lio.LUN{{Number: 0, File: pageFile, Size: pageSize}},
		ACLs: []lio.ACL{{Initiator: defaultInitiator(), CHAP: &lio.CHAP{
			UserID: pageUser, Password: pageSecret, MutualUserID: pageTUser, MutualPassword: pageTSecret,
		}}},
	}}}
}

var (
	// A LUN's link to its backstore and a mapped LUN's link to the TPG's
	// LUN: targetcli (rtslib) names them with a random suffix, the lab
	// "dev" and "lun" (the kernel takes any name).
	lunLinkRE    = regexp.MustCompile(`^(iscsi/.*/lun/lun_\d+)/[^/]+$`)
	mappedLinkRE = regexp.MustCompile(`^(iscsi/.*/acls/[^/]+/lun_\d+)/[^/]+$`)
	coreRE       = regexp.MustCompile(`core/([^/]+/[^/]+)(/.*)?$`)
	fileioIDRE   = regexp.MustCompile(`TCM FILEIO ID: \d+`)
)

// normalize makes two dumps of the same export comparable: backstores are
// named after the LUN that exports them (targetcli calls it boot0 under
// fileio_<n>, the lab d<n> under fileio_0), links by what they point to,
// and the device index in a backstore's info is dropped. Statistics
// (counters and global indexes) and the ACL's session info are left out.
func normalize(d map[string]string) map[string]string {
	names := map[string]string{} // "<hba>/<dev>" → "lun_<n>"
	for k, v := range d {
		if m := lunLinkRE.FindStringSubmatch(k); m != nil && strings.HasPrefix(v, "-> ") {
			if c := coreRE.FindStringSubmatch(v); c != nil {
				names[c[1]] = filepath.Base(m[1])
			}
		}
	}
	out := map[string]string{}
	for k, v := range d {
		switch {
		case strings.Contains(k, "/statistics/") || strings.Contains(k, "/fabric_statistics/") ||
			strings.HasSuffix(k, "/info") && strings.Contains(k, "/acls/"):
		case strings.HasPrefix(v, "-> ") && lunLinkRE.MatchString(k) && !mappedLinkRE.MatchString(k):
			m := lunLinkRE.FindStringSubmatch(k)
			c := coreRE.FindStringSubmatch(v)
			if c != nil {
				v = "-> core/" + names[c[1]]
			}
			out[m[1]+"/<link>"] = v
		case strings.HasPrefix(v, "-> ") && mappedLinkRE.MatchString(k):
			out[mappedLinkRE.FindStringSubmatch(k)[1]+"/<link>"] = v
		case strings.HasPrefix(k, "core/"):
			c := coreRE.FindStringSubmatch(k)
			if n, ok := names[c[1]]; ok {
				k = "core/<" + n + ">" + c[2]
			}
			out[k] = fileioIDRE.ReplaceAllString(v, "TCM FILEIO ID: N")
		default:
			out[k] = v
		}
	}
	return out
}

// diffDumps lists what differs between two normalised dumps.
func diffDumps(a, b map[string]string) []string {
	var diffs []string
	for k, va := range a {
		vb, ok := b[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("only targetcli: %s = %q", k, va))
		case va != vb:
			diffs = append(diffs, fmt.Sprintf("%s: targetcli %q, lab %q", k, va, vb))
		}
	}
	for k, vb := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("only the lab: %s = %q", k, vb))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// TestTargetsPage runs docs/targets.md's targetcli commands, as printed,
// with Debian's targetcli-fb in the LIO target VM (chrooted into a Debian
// root shared over virtio-9p), checks that lunboot's initiator then logs
// in with the page's CHAP accounts and sees the 20 GiB LUN 0, and compares
// the configfs tree targetcli made with the one the lab's own writer
// (internal/lio) makes for the same export: so the page and the lab
// cannot disagree.
func TestTargetsPage(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the LIO target VM: not in -short mode")
	}
	// make test-full: targetcli starts Python for each of the page's
	// commands, about 20 s each under TCG on the loaded lab machine (3 min
	// for the page), and the targetcli root's first build takes 1–2 min.
	testenv.Full(t)
	cmds := pageCommands(t)
	root := distrotest.TargetcliRoot(t)
	l := labtest.Start(t, lab.Options{Name: "targets-page"})
	for _, s := range []string{pageSecret, pageTSecret} {
		l.AddSecret(s)
	}
	li := labtest.LIO(t, l, lab.LIOOptions{Share: root})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := li.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	mask := strings.NewReplacer(pageSecret, "***", pageTSecret, "***")

	// The page's commands as one script, as an administrator pastes them.
	script := "set -ex\n" + strings.Join(cmds, "\n") + "\n"
	start := time.Now()
	out, err := li.Run(ctx, "/bin/sh", "-c", script)
	t.Logf("targetcli (%d commands, %s):\n%s", len(cmds), time.Since(start).Round(time.Millisecond), mask.Replace(out))
	if err != nil {
		t.Fatalf("the page's targetcli commands failed: %s", mask.Replace(err.Error()))
	}
	byTargetcli, err := li.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// lunboot logs in as the page says: its default initiator name (the
	// ACL's), the page's accounts, LUN 0.
	cfg := iscsi.Config{
		Portal:        netipPort(li),
		TargetName:    pageIQN,
		InitiatorName: defaultInitiator(),
		Dial:          l.DialContext,
		Logger:        logger(),
		LoginTimeout:  30 * time.Second,
		CHAP:          &iscsi.CHAP{Username: pageUser, Secret: pageSecret, TargetUsername: pageTUser, TargetSecret: pageTSecret},
	}
	s := login(t, cfg)
	t.Logf("negotiated with the page's configuration: %s", describe(s.Info()))
	ready(t, s, 0)
	c, err := scsi.ReadCapacity(tctx(t, 30*time.Second), s, lunOf(0), false)
	if err != nil || c.Blocks()*uint64(c.BlockSize) != pageSize {
		t.Fatalf("LUN 0: ReadCapacity = %+v, %v; want %d bytes", c, err, int64(pageSize))
	}
	writeRead(t, s, 0, 2048, randBytes(64<<10))
	logout(t, s)

	// The same export from the lab's writer.
	if err := li.Apply(ctx, pageConfig()); err != nil {
		t.Fatal(err)
	}
	byLab, err := li.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := normalize(byTargetcli), normalize(byLab)
	// Not an empty comparison: what the page set is in the tree.
	acl := "iscsi/" + pageIQN + "/tpgt_1/acls/" + defaultInitiator()
	for k, v := range map[string]string{
		acl + "/auth/userid": pageUser, acl + "/auth/userid_mutual": pageTUser,
		"iscsi/" + pageIQN + "/tpgt_1/attrib/authentication": "1", "core/<lun_0>/udev_path": pageFile,
		"iscsi/" + pageIQN + "/tpgt_1/enable": "1",
	} {
		if a[k] != v {
			t.Errorf("after the page's commands %s = %q, want %q", k, a[k], v)
		}
	}
	if diffs := diffDumps(a, b); len(diffs) > 0 {
		t.Errorf("configfs after the page's targetcli commands and after the lab's writer differ in %d of %d/%d entries:\n%s",
			len(diffs), len(a), len(b), strings.Join(diffs, "\n"))
	} else {
		t.Logf("configfs after the page's targetcli commands = after the lab's writer (%d entries compared; statistics, session info and backstore/link names left out)", len(a))
	}
	if err := li.Reset(ctx); err != nil {
		t.Fatal(err)
	}
}

// netipPort is li's portal as "ip:port".
func netipPort(li *lab.LIO) string { return li.Portal().String() }

// TestPageCommands: the page's LIO block parses (no VM; -short too).
func TestPageCommands(t *testing.T) {
	cmds := pageCommands(t)
	joined := strings.Join(cmds, "\n")
	for _, want := range []string{pageIQN, pageFile, "-s 20G", "password=" + pageSecret, "mutual_password=" + pageTSecret, defaultInitiator(), "userid=" + pageUser, "mutual_userid=" + pageTUser, "authentication=1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("docs/targets.md's LIO commands lack %q (the test's pageConfig assumes it)", want)
		}
	}
}
