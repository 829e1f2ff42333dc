package rootpath

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestSecretsNeverShown parses inputs carrying the secrets below, valid and
// broken, and checks every way a RootPath or an error can be formatted.
func TestSecretsNeverShown(t *testing.T) {
	const (
		pw  = "Pw0neSecret"
		rpw = "Rev3rseSecret"
		tgt = "iqn.2001-04.com.example:disk"
	)
	type parser struct {
		name string
		fn   func(string) (RootPath, error)
	}
	cmdline := []parser{{"ParseCmdline", ParseCmdline}, {"ParseTarget", ParseTarget}, {"Parse", Parse}}
	url := []parser{{"ParseURL", ParseURL}, {"ParseTarget", ParseTarget}}
	inputs := []struct {
		in      string
		parsers []parser
	}{
		{"iscsi:alice:" + pw + "@10.0.0.1::::" + tgt, cmdline},
		{"iscsi:alice:" + pw + ":bob:" + rpw + "@10.0.0.1::::" + tgt, cmdline},
		{"iscsi:alice:" + pw + ":bob:" + rpw + "@10.0.0.1:::zz:" + tgt, cmdline},
		{"iscsi:alice:" + pw + "@10.0.0.1::99999::" + tgt, cmdline},
		{"iscsi:alice:" + pw + "@10.0.0.1", cmdline},
		{"iscsi:alice:" + pw + ":x@10.0.0.1::::" + tgt, cmdline},
		{"iscsi:alice:" + pw + "@@10.0.0.1::::" + tgt, cmdline},
		{"iscsi:alice:" + pw + "@x@10.0.0.1::::" + tgt, cmdline},
		{"iscsi:alice:Pw0n@Secret@10.0.0.1::::" + tgt, cmdline}, // '@' inside the password
		{"iscsi:alice:Pw0n:Secret@10.0.0.1::::" + tgt, cmdline}, // ':' inside the password
		{"iscsi:alice:" + pw + "@[fe80::1%eth0]::::" + tgt, cmdline},
		{"iscsi:alice:" + pw + "@[fe80::1::::" + tgt, cmdline},
		{"iscsi://alice%" + pw + "@10.0.0.1/" + tgt + "/0", url},
		{"iscsi://alice:" + pw + "@10.0.0.1/" + tgt + "/0", url},
		{"iscsi://alice%" + pw + "@10.0.0.1/" + tgt + "/0?target_user=bob&target_password=" + rpw, url},
		{"iscsi://alice%" + pw + "@10.0.0.1/" + tgt + "/0?target_user=bob&target_password=" + rpw + "&x=1", url},
		{"iscsi://alice%" + pw + "@10.0.0.1/" + tgt + "/zz?target_user=bob&target_password=" + rpw, url},
		{"iscsi://alice%Pw0n?Secret@10.0.0.1/" + tgt + "/0", url},
		{"iscsi://alice%Pw0n/Secret@10.0.0.1/" + tgt + "/x", url},
		{"iscsi://alice%" + pw + "@fe80::1/" + tgt + "/0", url},
	}
	secrets := []string{pw, rpw, "Pw0n", "Secret"}
	for _, in := range inputs {
		for _, p := range in.parsers {
			r, err := p.fn(in.in)
			var outs []string
			if err != nil {
				outs = append(outs, err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			} else {
				var buf bytes.Buffer
				slog.New(slog.NewTextHandler(&buf, nil)).Info("t", "rp", r)
				slog.New(slog.NewJSONHandler(&buf, nil)).Info("t", "rp", r)
				js, _ := json.Marshal(struct{ R RootPath }{r})
				outs = append(outs, string(js), r.String(), r.Masked(), r.Portal(), buf.String(), fmt.Sprint(r), fmt.Sprintln(r),
					fmt.Sprintf("%v|%+v|%#v|%s|%q|%x|%d", r, r, r, r, r, r, r), fmt.Sprintf("%v", []RootPath{r}),
					fmt.Sprintf("%+v", struct{ R RootPath }{r}), fmt.Sprintf("%#v", &r), strings.Join(r.Warnings, " "))
			}
			for _, out := range outs {
				for _, s := range secrets {
					if strings.Contains(out, s) {
						t.Errorf("%s(%q): output %q shows secret %q", p.name, in.in, out, s)
					}
				}
			}
		}
	}
}
