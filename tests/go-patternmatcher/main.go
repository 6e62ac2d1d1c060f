// Reads "dockerignore<TAB>path" lines on stdin (the file's lines joined by \x1e) and prints,
// for each, what docker build does with the path under that .dockerignore: "bad" (a syntax
// error, the build fails), "ignored" or "kept"; or "malformed" where a line breaks
// filepath.Match's grammar and docker only misses it (its check stops at the first part of a
// pattern that does not match ".") and matches by a regex of it instead.
// It is moby's own patternmatcher, which BuildKit and the classic builder use, so the tests
// can hold extpack's matcher to it.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
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
	for _, pattern := range patterns {
		// as patternmatcher.New reads it
		if malformed(strings.TrimPrefix(filepath.Clean(strings.TrimSpace(pattern)), "!")) {
			return "malformed"
		}
		if !compiles(pattern) {
			return "bad" // an exclusion docker never reached: it fails the build once reached
		}
	}
	if ignored {
		return "ignored"
	}
	return "kept"
}

// compiles tells whether moby can make a regex of a pattern. It only tries when it reaches
// one, and it does not reach an exclusion while nothing before it matched: "**" first makes
// sure it does.
func compiles(pattern string) bool {
	matcher, err := patternmatcher.New([]string{"**", pattern})
	if err != nil {
		return false
	}
	_, err = matcher.MatchesOrParentMatches("x")
	return err == nil
}

// malformed checks each star-separated part of a pattern on its own, so the check reaches
// every part: filepath.Match parses a whole part even when the name does not match it.
func malformed(pattern string) bool {
	for _, part := range starSeparated(pattern) {
		if _, err := filepath.Match(part, ""); err != nil {
			return true
		}
	}
	return false
}

// starSeparated splits at the stars outside classes and escapes, as filepath.Match's scanner does.
func starSeparated(pattern string) []string {
	var parts []string
	inClass, start := false, 0
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			i++
		case '[':
			inClass = true
		case ']':
			inClass = false
		case '*':
			if !inClass {
				parts = append(parts, pattern[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, pattern[start:])
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
