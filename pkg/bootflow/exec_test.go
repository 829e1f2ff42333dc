package bootflow

import (
	"errors"
	"slices"
	"testing"
)

// flushRecorder is a Console that is also a Flusher, and records the order
// of Flush and the jump.
type flushRecorder struct {
	recorder
	events *[]string
}

func (f *flushRecorder) Flush() { *f.events = append(*f.events, "flush") }

func TestExecFlushesConsoleBeforeJump(t *testing.T) {
	for _, tt := range []struct {
		name    string
		console func(events *[]string) Console
		want    []string
	}{
		{"flusher", func(ev *[]string) Console { return &flushRecorder{events: ev} }, []string{"flush", "jump"}},
		{"plain console", func(*[]string) Console { return &recorder{} }, []string{"jump"}},
	} {
		var events []string
		jump := func() error {
			events = append(events, "jump")
			return errors.New("no kexec in tests")
		}
		b := &boot{o: Options{Console: tt.console(&events)}, m: Machine{Kexec: jump}}
		err := b.exec()
		var se *StageError
		if !errors.As(err, &se) || se.Stage != "kexec" {
			t.Errorf("%s: exec() = %v, want a kexec StageError", tt.name, err)
		}
		if !slices.Equal(events, tt.want) {
			t.Errorf("%s: exec() did %v, want %v", tt.name, events, tt.want)
		}
	}
}
