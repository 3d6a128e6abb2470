package main

import "strings"

// reference is an image reference split the way docker prints it. It is
// only for output: berth parses and validates references itself.
type reference struct {
	domain, path string // "docker.io", "library/busybox"
	tag, digest  string // "latest", "sha256:…"
	defaultTag   bool   // the tag was not given and is "latest"
}

// parseReference splits s docker's way: no registry means docker.io, a
// one-component Docker Hub name lives in library/, no tag or digest means
// "latest".
func parseReference(s string) reference {
	var r reference
	name := s
	if i := strings.Index(name, "@"); i >= 0 {
		name, r.digest = name[:i], name[i+1:]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, r.tag = name[:i], name[i+1:]
	}
	if r.tag == "" && r.digest == "" {
		r.tag, r.defaultTag = "latest", true
	}
	first, rest, found := strings.Cut(name, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		r.domain, r.path = first, rest
	} else {
		r.domain, r.path = "docker.io", name
	}
	if r.domain == "index.docker.io" {
		r.domain = "docker.io"
	}
	if r.domain == "docker.io" && !strings.Contains(r.path, "/") {
		r.path = "library/" + r.path
	}
	return r
}

// repository is the full repository name: "docker.io/library/busybox".
func (r reference) repository() string { return r.domain + "/" + r.path }

// familiarRepository is the repository as docker prints it: "busybox".
func (r reference) familiarRepository() string {
	if r.domain != "docker.io" {
		return r.repository()
	}
	return strings.TrimPrefix(r.path, "library/")
}

// String is the full reference: "docker.io/library/busybox:latest".
func (r reference) String() string { return r.repository() + r.suffix() }

// familiar is the short form: "busybox:latest".
func (r reference) familiar() string { return r.familiarRepository() + r.suffix() }

// tagOrDigest is what docker prints before "Pulling from".
func (r reference) tagOrDigest() string {
	if r.digest != "" {
		return r.digest
	}
	return r.tag
}

func (r reference) suffix() string {
	s := ""
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + r.digest
	}
	return s
}

// splitRepoTag splits a familiar name from Image.RepoTags into repository
// and tag, or repository and digest for "repo@sha256:…".
func splitRepoTag(name string) (repo, tag, digest string) {
	if i := strings.Index(name, "@"); i >= 0 {
		return name[:i], "", name[i+1:]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[:i], name[i+1:], ""
	}
	return name, "latest", ""
}
