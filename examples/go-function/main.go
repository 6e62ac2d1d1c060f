// A Go Lambda function that reads a parameter through the AWS Parameters and Secrets Lambda
// Extension, as in AWS's sample: the extension serves localhost:2773 inside the sandbox and
// trusts a caller that shows the sandbox's session token.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

// extensionURL is where the Parameters and Secrets extension listens: port 2773 unless the
// function's configuration moves it with the extension's own PARAMETERS_SECRETS_EXTENSION_HTTP_PORT.
func extensionURL() string {
	port := os.Getenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
	if port == "" {
		port = "2773"
	}
	return "http://localhost:" + port
}

type response struct {
	Message string `json:"message"`
	Value   string `json:"value"`
}

func handler(ctx context.Context) (response, error) {
	value, err := parameter(ctx, os.Getenv("PARAMETER_NAME"))
	if err != nil {
		return response{}, err
	}
	return response{Message: "Hello AWS Lambda", Value: value}, nil
}

// parameter asks the extension for an SSM parameter's value.
func parameter(ctx context.Context, name string) (string, error) {
	target := extensionURL() + "/systemsmanager/parameters/get?name=" + url.QueryEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Aws-Parameters-Secrets-Token", os.Getenv("AWS_SESSION_TOKEN"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("parameters and secrets extension: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("parameters and secrets extension answered %s", resp.Status)
	}
	var body struct {
		Parameter struct {
			Value string `json:"Value"`
		} `json:"Parameter"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("parameters and secrets extension: %w", err)
	}
	return body.Parameter.Value, nil
}

func main() {
	log.Println("cold start")
	lambda.Start(handler)
}
