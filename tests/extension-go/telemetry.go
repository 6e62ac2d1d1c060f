//go:build telemetry

package main

import (
	"bytes"
	"fmt"
	"net/http"
)

func subscribeTelemetry(api, id, name string) {
	body := []byte(`{"schemaVersion":"2022-12-13","types":["platform","function"],` +
		`"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4243"}}`)
	req, _ := http.NewRequest(http.MethodPut, api+"/2022-07-01/telemetry", bytes.NewReader(body))
	req.Header.Set("Lambda-Extension-Identifier", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail(name, "telemetry subscribe: %v", err)
	}
	resp.Body.Close()
	fmt.Printf("[%s] telemetry subscription answered %d\n", name, resp.StatusCode)
}
