package handoff

import (
	"errors"
	"strings"
	"testing"
)

// TestRunResult: the status the shell printed after a command decides
// Run's error: 0 is success, anything else an *ExitError naming the
// command and the status (with the output), a garbled status an error.
func TestRunResult(t *testing.T) {
	out, err := runResult("cat /x", "a\r\nb\r\n", "0")
	if err != nil || out != "a\nb\n" {
		t.Errorf("status 0: %q, %v; want \"a\\nb\\n\", nil", out, err)
	}

	out, err = runResult("false && sync", "oops\r\n", "1")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Status != 1 || ee.Cmd != "false && sync" || out != "oops\n" {
		t.Fatalf("status 1: %q, %v; want the output and an *ExitError with status 1", out, err)
	}
	for _, want := range []string{`"false && sync"`, "exit status 1", "oops"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}

	if _, err := runResult("ls", "", "127"); !errors.As(err, &ee) || ee.Status != 127 {
		t.Errorf("status 127: %v, want an *ExitError with status 127", err)
	}
	if _, err := runResult("ls", "", "x"); err == nil || errors.As(err, &ee) {
		t.Errorf("status \"x\": %v, want an error that is not an *ExitError", err)
	}

	long := strings.Repeat("y", 1000) + "END"
	if _, err := runResult("yes", long, "2"); err == nil || len(err.Error()) > 600 || !strings.Contains(err.Error(), "END") {
		t.Errorf("long output: error %d bytes, want the output's tail, under 600 bytes", len(err.Error()))
	}
}
