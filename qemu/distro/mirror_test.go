package distro

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// etcTree writes apt source files under a fake /etc.
func etcTree(t *testing.T, files map[string]string) string {
	t.Helper()
	etc := t.TempDir()
	for name, data := range files {
		p := filepath.Join(etc, "apt", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return etc
}

// debianSources is what a Debian 12 cloud image ships (and this project's
// machines have).
const debianSources = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`

func TestFindMirror(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    string
		wantErr string
	}{
		{name: "deb822", files: map[string]string{"sources.list.d/debian.sources": debianSources}, want: "http://deb.debian.org/debian"},
		{name: "one-line", files: map[string]string{"sources.list": "# comment\ndeb-src http://src.example/debian bookworm main\n" +
			"deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian/ bookworm main contrib # trailing\n"},
			want: "http://mirror.example/debian"},
		{name: "sources.list before sources.list.d", files: map[string]string{
			"sources.list":                  "deb http://first.example/debian bookworm main\n",
			"sources.list.d/debian.sources": debianSources,
		}, want: "http://first.example/debian"},
		{name: "wrong suite skipped", files: map[string]string{"sources.list": "deb http://old.example/debian bullseye main\n",
			"sources.list.d/debian.sources": debianSources}, want: "http://deb.debian.org/debian"},
		{name: "component main required", files: map[string]string{"sources.list": "deb http://nonfree.example/debian bookworm non-free\n",
			"sources.list.d/x.list": "deb http://main.example/debian bookworm main\n"}, want: "http://main.example/debian"},
		{name: "disabled stanza", files: map[string]string{"sources.list.d/a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n",
			"sources.list.d/b.sources": debianSources}, want: "http://deb.debian.org/debian"},
		{name: "deb-src only stanza", files: map[string]string{"sources.list.d/a.sources": "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n"},
			wantErr: "no deb (binary package) sources"},
		{name: "continuation lines and several URIs", files: map[string]string{"sources.list.d/a.sources": "Types: deb\nURIs: mirror+file:/etc/apt/mirrors.txt\n http://second.example/debian\nSuites: bookworm\nComponents: main\n"},
			want: "http://second.example/debian"},
		{name: "cdrom unusable", files: map[string]string{"sources.list": "deb cdrom:[Debian GNU/Linux 12.0.0 _Bookworm_ - Official amd64 DVD Binary-1]/ bookworm main\n"},
			wantErr: "no URI debootstrap can use"},
		{name: "ignored names", files: map[string]string{"sources.list.d/x.list.disabled-by-farm": "deb http://x.example/debian bookworm main\n",
			"sources.list.d/debian.sources": debianSources}, want: "http://deb.debian.org/debian"},
		{name: "file mirror", files: map[string]string{"sources.list": "deb file:/srv/mirror/debian bookworm main\n"}, want: "file:/srv/mirror/debian"},
		{name: "nothing", files: map[string]string{}, wantErr: "no deb (binary package) sources"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FindMirror(etcTree(t, tc.files), "bookworm")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("FindMirror() = %q, %v; want an error mentioning %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("FindMirror() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestAptListName(t *testing.T) {
	for _, tc := range []struct{ uri, want string }{
		{"http://deb.debian.org/debian", "deb.debian.org_debian_dists_bookworm_InRelease"},
		{"http://deb.debian.org/debian/", "deb.debian.org_debian_dists_bookworm_InRelease"},
		{"https://user:pw@mirror.example:8080/de_bian", "mirror.example:8080_de%5Fbian_dists_bookworm_InRelease"},
		{"file:/srv/mirror", "srv_mirror_dists_bookworm_InRelease"},
	} {
		if got := aptListName(tc.uri, "bookworm", "InRelease"); got != tc.want {
			t.Errorf("aptListName(%q) = %q, want %q", tc.uri, got, tc.want)
		}
	}
}

func TestReleaseDate(t *testing.T) {
	dir := t.TempDir()
	signed := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\nSuite: oldstable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nAcquire-By-Hash: yes\n"
	if err := os.WriteFile(filepath.Join(dir, "deb.debian.org_debian_dists_bookworm_InRelease"), []byte(signed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.example_debian_dists_bookworm_Release"), []byte("Origin: x\nDate: Mon, 01 Jan 2024 00:00:00 UTC\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ mirror, want string }{
		{"http://deb.debian.org/debian", "Sat, 11 Jul 2026 10:16:37 UTC"},
		{"http://other.example/debian", "Mon, 01 Jan 2024 00:00:00 UTC"},
		{"http://absent.example/debian", ""},
	} {
		if got := ReleaseDate(dir, tc.mirror, "bookworm"); got != tc.want {
			t.Errorf("ReleaseDate(%q) = %q, want %q", tc.mirror, got, tc.want)
		}
	}
}
