// Package demo is package mailtest's in-process mail system under its
// former names, for the callers not yet moved to mailtest: every name here
// is an alias of, or a one-line call to, mailtest's. See mailtest's package
// documentation for what the System serves and how it behaves.
package demo
