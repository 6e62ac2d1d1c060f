// A stand-in for the AWS Parameters and Secrets Lambda Extension, standard library only.
//
// It does what Lambda expects of an external extension: registers with the Extensions API
// (named after its own file, as Lambda requires), then loops on event/next until SHUTDOWN.
// Meanwhile it answers on localhost:2773 (or PARAMETERS_SECRETS_EXTENSION_HTTP_PORT, as the real
// extension reads it) like the real extension: a request carrying
// X-Aws-Parameters-Secrets-Token equal to the sandbox's AWS_SESSION_TOKEN gets a known value.
// Its lifecycle goes to stdout ("registered", "INVOKE", "SHUTDOWN"), which the emulator logs.
//
// Built with -tags telemetry, it also subscribes to the Telemetry API as ADOT or Datadog do.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
)

const extensionAPI = "2020-01-01/extension"

// SecretValue is what every known parameter or secret holds; the tests assert on it.
const SecretValue = "value-from-the-extension"

func main() {
	name := filepath.Base(os.Args[0])
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API")
	port := os.Getenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
	if port == "" {
		port = "2773"
	}
	listener, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fail(name, "listen on %s: %v", port, err)
	}
	go http.Serve(listener, http.HandlerFunc(serveValue))

	id := register(api, name)
	fmt.Printf("[%s] registered\n", name)
	subscribeTelemetry(api, id, name)
	for {
		event := next(api, id, name)
		fmt.Printf("[%s] %s %s\n", name, event.EventType, event.RequestID+event.ShutdownReason)
		if event.EventType == "SHUTDOWN" {
			return
		}
	}
}

type event struct {
	EventType      string `json:"eventType"`
	RequestID      string `json:"requestId"`
	ShutdownReason string `json:"shutdownReason"`
}

func register(api, name string) string {
	body := []byte(`{"events":["INVOKE","SHUTDOWN"]}`)
	req, _ := http.NewRequest(http.MethodPost, api+"/"+extensionAPI+"/register", bytes.NewReader(body))
	req.Header.Set("Lambda-Extension-Name", name)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		fail(name, "register: %v %v", err, status(resp))
	}
	resp.Body.Close()
	return resp.Header.Get("Lambda-Extension-Identifier")
}

func next(api, id, name string) event {
	req, _ := http.NewRequest(http.MethodGet, api+"/"+extensionAPI+"/event/next", nil)
	req.Header.Set("Lambda-Extension-Identifier", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		fail(name, "event/next: %v %v", err, status(resp))
	}
	defer resp.Body.Close()
	var e event
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		fail(name, "event/next body: %v", err)
	}
	return e
}

// serveValue answers the Parameters and Secrets extension's two GET routes.
func serveValue(w http.ResponseWriter, r *http.Request) {
	token := os.Getenv("AWS_SESSION_TOKEN")
	if token == "" || r.Header.Get("X-Aws-Parameters-Secrets-Token") != token {
		http.Error(w, "missing or wrong X-Aws-Parameters-Secrets-Token", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/systemsmanager/parameters/get":
		name := r.URL.Query().Get("name")
		if name == "" {
			http.Error(w, "a name is required", http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"Parameter": map[string]string{"Name": name, "Value": SecretValue}})
	case "/secretsmanager/get":
		name := r.URL.Query().Get("secretId")
		json.NewEncoder(w).Encode(map[string]string{"Name": name, "SecretString": SecretValue})
	default:
		http.NotFound(w, r)
	}
}

func status(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	return resp.Status
}

func fail(name, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "["+name+"] "+format+"\n", args...)
	os.Exit(1)
}
