package kmod

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParamsFromCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"console=ttyS0 root=/dev/nbd0p1 quiet", map[string]string{}},
		{"nbd.nbds_max=4 console=ttyS0 nbd.max_part=16", map[string]string{"nbd": "nbds_max=4 max_part=16"}},
		// '-' in the module name folds to '_'; bare flags stay bare.
		{"virtio-net.napi_tx e1000e.InterruptThrottleRate=1,1", map[string]string{"virtio_net": "napi_tx", "e1000e": "InterruptThrottleRate=1,1"}},
		// Quoted values keep their quotes for init_module's own parser.
		{`mod.p="a b" x=1`, map[string]string{"mod": `p="a b"`}},
		{`"mod.p=a b" x=1`, map[string]string{"mod": `p="a b"`}},
		// Only the first '.' separates module from parameter.
		{"lunboot.root.path=x", map[string]string{"lunboot": "root.path=x"}},
		// After "--" the words are init's.
		{"nbd.nbds_max=2 -- nbd.max_part=3", map[string]string{"nbd": "nbds_max=2"}},
		{".p=1 m.=2 m/x.p=3", map[string]string{}},
		// Quotes as next_arg strips them.
		{`"m.a=1" m.b="2" "m.c="3`, map[string]string{"m": "a=1 b=2 c=3"}},
		{`m.a="x"y"`, map[string]string{}},
		{`"m.a="b""`, map[string]string{}},
		// Quotes the kernel keeps in the value are passed on as they are.
		{`m.a=x"y z" m.b=""""`, map[string]string{"m": `a=x"y z" b=""""`}},
		// The kernel's white space, all of it, separates and is quoted.
		{"m.a=1\rm.b=2\vm.c=3\fm.d=4\xa0m.e=\"x\ny\"", map[string]string{"m": "a=1 b=2 c=3 d=4 e=\"x\ny\""}},
		// "--" ends the kernel's parameters however it is quoted.
		{`m.a=1 "--" m.b=2`, map[string]string{"m": "a=1"}},
		{`m.a=1 --=x m.b=2`, map[string]string{"m": "a=1 b=2"}},
	}
	for _, tt := range tests {
		got := ParamsFromCmdline(tt.in)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParamsFromCmdline(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func FuzzParamsFromCmdline(f *testing.F) {
	f.Add("nbd.nbds_max=4 console=ttyS0 nbd.max_part=16")
	f.Add(`mod.p="a b" "x.y=1 2" -- z.w=1`)
	f.Add(`"`)
	f.Add("a.b=\"\"\"")
	f.Fuzz(func(t *testing.T, in string) {
		for mod, p := range ParamsFromCmdline(in) {
			if !validName(mod) || p == "" {
				t.Fatalf("ParamsFromCmdline(%q) gave %q: %q", in, mod, p)
			}
			if strings.Count(p, `"`)%2 != 0 {
				t.Fatalf("ParamsFromCmdline(%q) unbalanced quotes in %q", in, p)
			}
		}
	})
}
