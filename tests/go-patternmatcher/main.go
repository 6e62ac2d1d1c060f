// Reads "dockerignore<TAB>path" lines on stdin (the file's lines joined by \x1e) and prints,
// for each, what docker build does with the path under that .dockerignore: "bad" (a syntax
// error, the build fails), "ignored" or "kept".
// It is moby's own patternmatcher, which BuildKit and the classic builder use, so the tests
// can hold extpack's matcher to it.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func verdict(dockerignore, path string) string {
	patterns, err := ignorefile.ReadAll(strings.NewReader(strings.ReplaceAll(dockerignore, "\x1e", "\n")))
	if err != nil {
		return "bad"
	}
	matcher, err := patternmatcher.New(patterns)
	if err != nil {
		return "bad"
	}
	ignored, err := matcher.MatchesOrParentMatches(path)
	if err != nil {
		return "bad"
	}
	if ignored {
		return "ignored"
	}
	return "kept"
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		dockerignore, path, _ := strings.Cut(in.Text(), "\t")
		fmt.Fprintln(out, verdict(dockerignore, path))
	}
}
