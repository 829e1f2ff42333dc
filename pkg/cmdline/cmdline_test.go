package cmdline

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// flag and kv build expected parameters.
func flag(raw, key string) Param { return Param{Key: key, Raw: raw} }
func kv(raw, key, value string) Param {
	return Param{Key: key, Value: value, HasValue: true, Raw: raw}
}

// TestSplit's cases follow next_arg in the kernel's lib/cmdline.c (and
// kernel/params.c parse_args, which skips white space before the first
// parameter), the isspace() table of lib/ctype.c, and the kernel's view of
// the command line as a C string.
func TestSplit(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want []Param
	}{
		{"empty", "", nil},
		{"only white space", " \t\n\v\f\r\xa0", nil},
		{"bare words", "  quiet  ro ", []Param{flag("quiet", "quiet"), flag("ro", "ro")}},
		{"values", "a=1 b= c", []Param{kv("a=1", "a", "1"), kv("b=", "b", ""), flag("c", "c")}},
		{"first = splits", "root=UUID=abc", []Param{kv("root=UUID=abc", "root", "UUID=abc")}},

		// isspace(): lib/ctype.c marks 9-13, 32 and 160 as _S.
		{"every kernel space", "a\tb\nc\vd\fe\rf g\xa0h", []Param{
			flag("a", "a"), flag("b", "b"), flag("c", "c"), flag("d", "d"),
			flag("e", "e"), flag("f", "f"), flag("g", "g"), flag("h", "h")}},
		{"CRLF", "a=1\r\nb=2\n", []Param{kv("a=1", "a", "1"), kv("b=2", "b", "2")}},
		// UTF-8 "à" is C3 A0: the kernel splits after the C3.
		{"0xA0 inside UTF-8", "lunboot.entry=Voil\xc3\xa0 x", []Param{
			kv("lunboot.entry=Voil\xc3", "lunboot.entry", "Voil\xc3"), flag("x", "x")}},
		{"0xA0 quoted", "lunboot.entry=\"Voil\xc3\xa0\" x", []Param{
			kv("lunboot.entry=\"Voil\xc3\xa0\"", "lunboot.entry", "Voil\xc3\xa0"), flag("x", "x")}},
		// Not white space to the kernel: NEL (0x85), the C0 separators,
		// and Unicode spaces other than 0xA0 (U+2003 is E2 80 83).
		{"other bytes are not space", "a\x85b c\x1cd e\u2003f", []Param{
			flag("a\x85b", "a\x85b"), flag("c\x1cd", "c\x1cd"), flag("e\u2003f", "e\u2003f")}},
		// The kernel's command line is a C string.
		{"NUL ends the line", "a b\x00c d", []Param{flag("a", "a"), flag("b", "b")}},

		// next_arg's "equals" is the first '=' at an index above 0.
		{"= first is part of the name", "=x", []Param{flag("=x", "=x")}},
		{"= first then a value", "=x=y", []Param{kv("=x=y", "=x", "y")}},
		{"lone =", "=", []Param{flag("=", "=")}},
		{"double =", "==", []Param{kv("==", "=", "")}},
		{"quoted = first", `"=x"`, []Param{flag(`"=x"`, "=x")}},
		{"quoted lone =", `"="`, []Param{flag(`"="`, "=")}},

		// Quotes group white space, wherever they are.
		{"quoted value", `splash="a b" x`, []Param{kv(`splash="a b"`, "splash", "a b"), flag("x", "x")}},
		{"quoted parameter", `"dyndbg=file x +p" y=`, []Param{
			kv(`"dyndbg=file x +p"`, "dyndbg", "file x +p"), kv("y=", "y", "")}},
		{"quoted flag", `"a b" c`, []Param{flag(`"a b"`, "a b"), flag("c", "c")}},
		{"quotes inside the value stay", `a=x"y z"w v`, []Param{kv(`a=x"y z"w`, "a", `x"y z"w`), flag("v", "v")}},
		{"quotes inside the name stay", `a"b c"=d`, []Param{kv(`a"b c"=d`, `a"b c"`, "d")}},
		{"= inside quotes counts", `"a b=c d"`, []Param{kv(`"a b=c d"`, "a b", "c d")}},
		{"unterminated value", `a="never closed b=c`, []Param{kv(`a="never closed b=c`, "a", "never closed b=c")}},
		{"unterminated parameter", `"a b`, []Param{flag(`"a b`, "a b")}},
		{"unterminated mid-value", `a=b"c d`, []Param{kv(`a=b"c d`, "a", `b"c d`)}},

		// Quote removal: the value's opening quote, the parameter's
		// opening quote, and the last byte if it is a quote, once.
		{"inner quote of a quoted value", `a="x"y"`, []Param{kv(`a="x"y"`, "a", `x"y`)}},
		{"no closing quote at the end", `a="x"y`, []Param{kv(`a="x"y`, "a", `x"y`)}},
		{"both quoted, last quote removed once", `"a="b""`, []Param{kv(`"a="b""`, "a", `b"`)}},
		{"parameter quoted, value not", `"a=b"`, []Param{kv(`"a=b"`, "a", "b")}},
		{"parameter quoted, ends in a letter", `"a=b"c`, []Param{kv(`"a=b"c`, "a", `b"c`)}},
		{"parameter quoted, value opens a quote", `"m.c="3`, []Param{kv(`"m.c="3`, "m.c", "3")}},
		{"quoted name closed before =", `"a"=b`, []Param{kv(`"a"=b`, `a"`, "b")}},
		{"value is one quote", `a="`, []Param{kv(`a="`, "a", "")}},
		{"value is two quotes", `a="" b`, []Param{kv(`a=""`, "a", ""), flag("b", "b")}},
		{"value is four quotes", `a=""""`, []Param{kv(`a=""""`, "a", `""`)}},
		{"quoted, empty value", `"a=`, []Param{kv(`"a=`, "a", "")}},
		{"quoted, value one quote", `"a="`, []Param{kv(`"a="`, "a", "")}},
		{"lone quote", `"`, []Param{flag(`"`, "")}},
		{"empty quotes", `"" x`, []Param{flag(`""`, ""), flag("x", "x")}},
		{"second = stays in the value", `a="b"="c"`, []Param{kv(`a="b"="c"`, "a", `b"="c`)}},

		// Split keeps "--" and what follows; Kernel stops there.
		{"dashes", `x -- init "a b"`, []Param{flag("x", "x"), flag("--", "--"), flag("init", "init"), flag(`"a b"`, "a b")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Split(tt.in)); diff != "" {
				t.Errorf("Split(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestKernel follows parse_args (kernel/params.c): it stops at a parameter
// named "--" without a value; init/main.c gives the rest to init.
func TestKernel(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string // keys
	}{
		{"", nil},
		{"a b", []string{"a", "b"}},
		{"a -- b=c", []string{"a"}},
		{"-- a", nil},
		{"a -- b -- c", []string{"a"}},
		// next_arg removes the quotes before parse_args compares.
		{`a "--" b`, []string{"a"}},
		{`a "--`, []string{"a"}},
		// With a value, or longer, it is a parameter like any other.
		{"a --=x b", []string{"a", "--", "b"}},
		{"a --= b", []string{"a", "--", "b"}},
		{"a --- b", []string{"a", "---", "b"}},
		{"a -- ", []string{"a"}},
	} {
		var got []string
		for _, p := range Kernel(tt.in) {
			got = append(got, p.Key)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Kernel(%q) keys = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		p    Param
		want string // "" for an error
	}{
		{Param{Key: "quiet"}, "quiet"},
		{Param{Key: "--"}, "--"},
		{Param{Key: "a", HasValue: true}, "a="},
		{Param{Key: "a", Value: "b", HasValue: true}, "a=b"},
		{Param{Key: "a", Value: "b c", HasValue: true}, `a="b c"`},
		{Param{Key: "a", Value: "b\tc\nd", HasValue: true}, "a=\"b\tc\nd\""},
		{Param{Key: "a", Value: "Voil\xc3\xa0", HasValue: true}, "a=\"Voil\xc3\xa0\""},
		{Param{Key: "a", Value: "x=y", HasValue: true}, "a=x=y"},
		{Param{Key: "=a", Value: "b", HasValue: true}, "=a=b"},
		{Param{Key: "=", HasValue: true}, "=="},
		// Quotes that already group the white space stay as they are.
		{Param{Key: "a", Value: `x"y z"`, HasValue: true}, `a=x"y z"`},
		{Param{Key: "a", Value: `x""y`, HasValue: true}, `a=x""y`},
		// A value that starts with a quote, or whose quotes do not
		// close, goes into quotes when that balances them.
		{Param{Key: "a", Value: `"x"`, HasValue: true}, `a=""x""`},
		{Param{Key: "a", Value: `"x" y""`, HasValue: true}, `a=""x" y"""`},
		{Param{Key: "a", Value: `"x"y"`, HasValue: true}, ""},
		// Quoting cannot put white space after a leading quote.
		{Param{Key: "a", Value: `"x y"`, HasValue: true}, ""},
		{Param{Key: "a", Value: `"`, HasValue: true}, ""},
		{Param{Key: "a", Value: `s3cr"et`, HasValue: true}, ""},
		{Param{Key: "a", Value: `"x`, HasValue: true}, ""},
		{Param{Key: "a", Value: `x" y`, HasValue: true}, ""},
		{Param{Key: "a", Value: "x\x00", HasValue: true}, ""},
		// Names next_arg cannot return.
		{Param{}, ""},
		{Param{HasValue: true, Value: "x"}, ""},
		{Param{Key: "a=b", Value: "s3cret", HasValue: true}, ""},
		{Param{Key: "a b"}, ""},
		{Param{Key: "a\xa0b"}, ""},
		{Param{Key: `a"`}, ""},
		{Param{Key: "a\x00"}, ""},
	} {
		got, err := tt.p.Format()
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrUnwritable) {
				t.Errorf("%#v.Format() = %q, %v; want an ErrUnwritable error", tt.p, got, err)
			}
			if err != nil && len(tt.p.Value) > 3 && strings.Contains(err.Error(), tt.p.Value) {
				t.Errorf("%#v.Format() error %q shows the value", tt.p, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%#v.Format() = %q, %v; want %q", tt.p, got, err, tt.want)
			continue
		}
		want := tt.p
		want.Raw = got
		if back := Split(got); !cmp.Equal(back, []Param{want}) {
			t.Errorf("Split(%q) = %#v, want %#v", got, back, want)
		}
	}
}

func TestJoin(t *testing.T) {
	ps := Split(`BOOT_IMAGE=/vmlinuz  "quoted key=v"   x="a b" -- init`)
	ps = append(ps,
		Param{Key: "netroot", Value: "iscsi:***@192.0.2.1::::iqn.x:y", HasValue: true},
		Param{Key: "lunboot.append", Value: "console=ttyS0 quiet", HasValue: true},
		Param{Key: "a", Value: `x"y`, HasValue: true},
	)
	const want = `BOOT_IMAGE=/vmlinuz "quoted key=v" x="a b" -- init ` +
		`netroot=iscsi:***@192.0.2.1::::iqn.x:y lunboot.append="console=ttyS0 quiet" a=x"y`
	if got := Join(ps); got != want {
		t.Errorf("Join() =\n  %s\nwant\n  %s", got, want)
	}
	if got := Join(nil); got != "" {
		t.Errorf("Join(nil) = %q, want empty", got)
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		`BOOT_IMAGE=/vmlinuz-6.1 root=UUID=1234 ro quiet`,
		`a="b c" "d=e f" -- g "h i"`,
		`lunboot.append="console=ttyS0 quiet" "lunboot.entry=Debian GNU" nbd.nbds_max=4`,
		`x="`, "\t=\"\"=", `"a="b""`, `a=x"y z"w`, `"m.c="3 m.a="x"y"`,
		"lunboot.entry=Voil\xc3\xa0 \v\f\r\n", "a\x00b c",
		`ip=10.0.0.2::10.0.0.1:255.255.255.0:h::none "--" --=x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps := Split(s)

		// The parameters are s's text in order, separated by white
		// space, up to the first NUL.
		line, _, _ := strings.Cut(s, "\x00")
		pos := 0
		for _, p := range ps {
			if p.Raw == "" {
				t.Fatalf("Split(%q): empty Raw in %#v", s, p)
			}
			start := pos
			for pos < len(line) && isSpace(line[pos]) {
				pos++
			}
			if start > 0 && pos == start {
				t.Fatalf("Split(%q): %q does not follow white space", s, p.Raw)
			}
			if !strings.HasPrefix(line[pos:], p.Raw) {
				t.Fatalf("Split(%q): %q is not next at offset %d", s, p.Raw, pos)
			}
			pos += len(p.Raw)
			// Each parameter reads the same on its own.
			if alone := Split(p.Raw); !cmp.Equal(alone, []Param{p}) {
				t.Fatalf("Split(%q) = %#v, but in %q it was %#v", p.Raw, alone, s, p)
			}
		}
		if hasNonSpace(line[pos:]) {
			t.Fatalf("Split(%q) = %#v left %q", s, ps, line[pos:])
		}

		// Written back, they split the same.
		if again := Split(Join(ps)); !cmp.Equal(again, ps) {
			t.Fatalf("Split(Join(Split(%q))) = %#v, want %#v", s, again, ps)
		}

		// Kernel is Split up to the first "--".
		k := Kernel(s)
		if !slices.Equal(k, ps[:len(k)]) {
			t.Fatalf("Kernel(%q) = %#v is not a prefix of %#v", s, k, ps)
		}
		for _, p := range k {
			if p.IsEnd() {
				t.Fatalf("Kernel(%q) = %#v includes the end", s, k)
			}
		}
		if len(k) < len(ps) && !ps[len(k)].IsEnd() {
			t.Fatalf("Kernel(%q) stopped at %#v", s, ps[len(k)])
		}

		// Format writes every parameter it accepts so that it splits
		// back, and accepts every one a quote cannot upset.
		for _, p := range ps {
			checkFormat(t, p)
		}
	})
}

func FuzzFormat(f *testing.F) {
	f.Add("a", "b c", true)
	f.Add("lunboot.entry", "Voil\xc3\xa0", true)
	f.Add("a", `x"y z"`, true)
	f.Add("a", `"x"`, true)
	f.Add("=", "", true)
	f.Add("--", "", false)
	f.Add("a=b", "", false)
	f.Fuzz(func(t *testing.T, key, value string, hasValue bool) {
		checkFormat(t, Param{Key: key, Value: value, HasValue: hasValue})
	})
}

func checkFormat(t *testing.T, p Param) {
	t.Helper()
	s, err := p.Format()
	if err != nil {
		if !errors.Is(err, ErrUnwritable) {
			t.Fatalf("%#v.Format() error %v is not ErrUnwritable", p, err)
		}
		keyOK := p.Key != "" && !strings.ContainsAny(p.Key, "\"\x00") &&
			!strings.Contains(p.Key[1:], "=") && !hasSpace(p.Key)
		if keyOK && (!p.HasValue || !strings.ContainsAny(p.Value, "\"\x00")) {
			t.Fatalf("%#v.Format() refused a writable parameter: %v", p, err)
		}
		return
	}
	want := Param{Key: p.Key, Value: p.Value, HasValue: p.HasValue, Raw: s}
	if !p.HasValue {
		want.Value = ""
	}
	if got := Split(s); !cmp.Equal(got, []Param{want}) {
		t.Fatalf("%#v.Format() = %q, which splits into %#v", p, s, got)
	}
}

func hasNonSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) {
			return true
		}
	}
	return false
}
