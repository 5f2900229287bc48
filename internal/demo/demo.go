package demo

import "github.com/mailedge/mailedge/mailtest"

// Sentinel errors returned by System (mailtest's).
var (
	// ErrClosed is mailtest.ErrClosed.
	ErrClosed = mailtest.ErrClosed
	// ErrUnknownUser is mailtest.ErrUnknownUser.
	ErrUnknownUser = mailtest.ErrUnknownUser
	// ErrNotLocal is mailtest.ErrNotLocal.
	ErrNotLocal = mailtest.ErrNotLocal
	// ErrBadOptions is mailtest.ErrBadOptions.
	ErrBadOptions = mailtest.ErrBadOptions
)

// Options configure a System (mailtest.Options).
type Options = mailtest.Options

// System is an in-process mail system (mailtest.System).
type System = mailtest.System

// Addrs are the loopback addresses Start listens on (mailtest.Addrs).
type Addrs = mailtest.Addrs

// New returns a System configured by opt (mailtest.New).
func New(opt Options) (*System, error) { return mailtest.New(opt) }
