package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/bootflow"
)

func TestConsoleFailed(t *testing.T) {
	err := errors.New("iscsi: login: status 02/01")
	for _, tt := range []struct {
		attempt, attempts int
		retryIn           time.Duration
		want              []string
		wantNot           []string
	}{
		{1, 1, 0, []string{"login      FAILED after 20ms: iscsi: login: status 02/01\n"}, []string{"attempt", "retrying"}},
		{1, 4, time.Second, []string{"FAILED (attempt 1/4) after", "login      retrying in 1s\n"}, []string{"not retried"}},
		{4, 4, 0, []string{"FAILED (attempt 4/4) after"}, []string{"retrying", "not retried"}},
		// A permanent error on the first of four attempts.
		{1, 4, 0, []string{"FAILED (attempt 1/4, not retried) after"}, []string{"retrying"}},
		{3, bootflow.AttemptsForever, 2 * time.Second, []string{"FAILED (attempt 3) after", "retrying in 2s"}, nil},
		{3, bootflow.AttemptsForever, 0, []string{"FAILED (attempt 3, not retried) after"}, nil},
	} {
		var b strings.Builder
		c := &console{w: &b, start: time.Now()}
		c.Failed("login", 20*time.Millisecond, err, tt.attempt, tt.attempts, tt.retryIn)
		got := b.String()
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("Failed(attempt %d/%d, retry in %s) printed %q, want it to contain %q", tt.attempt, tt.attempts, tt.retryIn, got, w)
			}
		}
		for _, w := range tt.wantNot {
			if strings.Contains(got, w) {
				t.Errorf("Failed(attempt %d/%d, retry in %s) printed %q, want no %q", tt.attempt, tt.attempts, tt.retryIn, got, w)
			}
		}
	}
}
