package probe

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sampleResult() *Result {
	return &Result{
		Version: ResultVersion, Fixture: "gpt-bls", Entry: "bls-default", Kernel: "6.1.0-56-amd64",
		Cmdline:  "console=ttyS0 iscsi_password=***",
		Handoffs: []Handoff{{Source: "dracut", Portal: "10.0.0.1:3260", Target: "iqn.2026-11.org.x:t", LUN: "1", secret: "never-printed"}},
		Net:      &Net{Interface: "eth0", Method: "dhcp", Address: "10.0.0.100/24"},
		Logins:   []Login{{Source: "dracut", OK: true, LUN: "1", Sector0SHA256: "ab", CHAP: "one-way"}},
		Uptime:   12.5,
	}
}

func TestResultRoundTrip(t *testing.T) {
	r := sampleResult()
	line, err := EncodeResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, "never-printed") {
		t.Errorf("EncodeResult = %q: carries a secret", line)
	}
	console := "boot noise\n" + StartMarker + " fixture=gpt-bls entry=x\nmore\n" + line + "\n"
	got, err := FindResult(console)
	if err != nil {
		t.Fatalf("FindResult: %v", err)
	}
	r.Handoffs[0].secret = ""
	if !cmp.Equal(got, r, cmp.AllowUnexported(Handoff{})) {
		t.Errorf("FindResult(EncodeResult(r)) = %+v, want %+v", got, r)
	}
	if m := StartPattern.FindStringSubmatch(console); m == nil || m[1] != "gpt-bls" {
		t.Errorf("StartPattern on %q = %q, want fixture gpt-bls", console, m)
	}
}

func TestFindResultErrors(t *testing.T) {
	tests := []struct {
		console string
		want    string
	}{
		{"no marker here\n", "no " + ResultMarker},
		{ResultMarker + ` {"version":1,` + "\n", "no " + ResultMarker}, // incomplete JSON does not match
		{ResultMarker + ` {"version":99}` + "\n", "version 99"},
		{ResultMarker + ` {"version":"x"}` + "\n", "decode result"},
	}
	for _, tt := range tests {
		_, err := FindResult(tt.console)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("FindResult(%q) = %v, want an error containing %q", tt.console, err, tt.want)
		}
	}
	if _, err := FindResult(""); !errors.Is(err, ErrNoResult) {
		t.Errorf("FindResult(\"\") = %v, want ErrNoResult", err)
	}
	if _, err := DecodeResult("{" + strings.Repeat(" ", MaxResultLen) + "}"); err == nil {
		t.Errorf("DecodeResult(oversized) succeeded")
	}
}

func TestResultOK(t *testing.T) {
	r := sampleResult()
	if !r.OK() {
		t.Errorf("OK() = false for a successful login")
	}
	r.Logins = append(r.Logins, Login{Source: "ibft", Error: "refused"})
	if r.OK() {
		t.Errorf("OK() = true with a failed login")
	}
	if s := r.Summary(); !strings.Contains(s, "login[ibft]=FAILED(refused)") || !strings.Contains(s, "login[dracut]=ok") {
		t.Errorf("Summary() = %q, want both logins", s)
	}
	if (&Result{}).OK() {
		t.Errorf("OK() = true without logins")
	}
}

func FuzzDecodeResult(f *testing.F) {
	line, _ := EncodeResult(sampleResult())
	f.Add(strings.TrimPrefix(line, ResultMarker+" "))
	f.Add(`{"version":1,"ibft":{"nics":[{"name":"x","attrs":null}]}}`)
	f.Add(`{"version":1,"logins":[{}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := DecodeResult(s)
		if err != nil {
			return
		}
		_ = r.Summary()
		_ = r.OK()
	})
}
