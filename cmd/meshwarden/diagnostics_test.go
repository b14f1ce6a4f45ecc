package main

import (
	"runtime"
	"testing"
	"time"
)

func TestProfileFlagsSetRates(t *testing.T) {
	defer runtime.SetMutexProfileFraction(runtime.SetMutexProfileFraction(-1))
	defer runtime.SetBlockProfileRate(0)
	if err := (&profileFlags{mutexFraction: 7, blockRate: time.Microsecond}).apply(); err != nil {
		t.Fatal(err)
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 7 {
		t.Fatalf("mutex profile fraction = %d, want 7", got)
	}
	if err := (&profileFlags{mutexFraction: -2}).apply(); err == nil {
		t.Fatal("a negative fraction was accepted")
	}
	if _, _, err := runCLI(t, "gateway", "--block-profile-rate", "-1s"); err == nil {
		t.Fatal("gateway accepted --block-profile-rate -1s")
	}
}
