//go:build !telemetry

package main

// subscribeTelemetry does nothing without -tags telemetry: most extensions never call that API.
func subscribeTelemetry(api, id, name string) {}
