// Package exitcode gives the meshwarden command distinct exit statuses, so
// scripts and CI can tell a finding from a typo from an outage:
//
//	0  success (and, for checks, nothing found)
//	1  the command ran and found something: audit verify or verify-proof
//	   failed, policy validate found errors, policy diff --exit-code found
//	   changes
//	2  usage: an unknown command or flag, a missing or malformed argument
//	3  failure: the command could not do its job (a file, Consul or the
//	   plane could not be reached or read)
package exitcode

import (
	"errors"
	"fmt"
)

// The exit statuses.
const (
	OK       = 0
	Findings = 1
	Usage    = 2
	Failure  = 3
)

// Error carries an exit status with an error.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Finding marks err as a finding (exit 1).
func Finding(err error) error { return &Error{Code: Findings, Err: err} }

// UsageError marks err as a usage error (exit 2).
func UsageError(err error) error { return &Error{Code: Usage, Err: err} }

// Usagef is UsageError(fmt.Errorf(format, args...)).
func Usagef(format string, args ...any) error { return UsageError(fmt.Errorf(format, args...)) }

// Of returns the exit status for err: 0 for nil, the code of an Error in
// its chain, else Failure.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failure
}
