// Package testprog starts the real programs that tests hold cowtrace to:
// a Redis server, a PostgreSQL cluster, the Python interpreter. It is apart
// from testenv because its clients need package net, which links cgo into
// a test binary, and the experiment's worker, which is the test binary
// itself, behaves otherwise with cgo (its reads of untouched memory get
// pages of their own rather than the zero page; the zero-page scenario
// says so): only the tests that run these programs link it.
package testprog
