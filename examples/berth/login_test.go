package main

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/berthtest"
)

// TestLogin: with a registry whose token service lets in only one user,
// push fails before login, login refuses a wrong password (not showing
// it) and writes nothing, login (given a URL, as docker takes it) stores
// the credentials in docker's config.json (its settings and mode kept, as
// docker keeps them), push and pull then pass, and after logout pull
// fails again.
func TestLogin(t *testing.T) {
	// A registry and its token service on one host:port, as clients only
	// follow a realm on a private address to the registry's own host: a
	// proxy serves /token itself and passes the rest to the registry.
	var registry http.Handler
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" {
			registry.ServeHTTP(w, r)
			return
		}
		if user, pass, ok := r.BasicAuth(); !ok || user != "berth" || pass != "secret" {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"token":"let-in","access_token":"let-in"}`))
	}))
	host := front.Listener.Addr().String()
	reg := berthtest.StartTokenRegistry(t, "http://"+host+"/token")
	registry = httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: reg.Host})
	front.Start()
	defer front.Close()
	config := t.TempDir()
	t.Setenv("DOCKER_CONFIG", config) // the berth commands this test runs inherit it
	if err := os.WriteFile(filepath.Join(config, "config.json"), []byte(`{"psFormat": "table {{.Names}}"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	root := containerSetup(t)
	ref := host + "/private/busybox:1"
	mustBerth(t, root, "tag", "busybox", ref)
	if res := runBerth(t, root, nil, "push", ref); res.code == 0 || !strings.Contains(res.stderr, "UNAUTHORIZED") {
		t.Fatalf("push before login: exit %d, stderr %q; want the token service's UNAUTHORIZED", res.code, res.stderr)
	}
	if res := runBerth(t, root, []byte("wrong\n"), "login", "-u", "berth", "--password-stdin", host); res.code != 1 || strings.Contains(res.stdout, "Login Succeeded") ||
		!strings.Contains(res.stderr, "UNAUTHORIZED") || strings.Contains(res.stderr, "wrong") {
		t.Errorf("login with a wrong password: exit %d, %q, %q; want its UNAUTHORIZED, without the password", res.code, res.stdout, res.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(config, "config.json")); strings.Contains(string(b), host) {
		t.Errorf("a refused login wrote credentials: %s", b)
	}
	if res := runBerth(t, root, []byte("secret\n"), "login", "-u", "berth", "--password-stdin", "http://"+host+"/v2/"); res.code != 0 || res.stdout != "Login Succeeded\n" ||
		!strings.Contains(res.stderr, "stored unencrypted") {
		t.Fatalf("login: exit %d, %q, %q", res.code, res.stdout, res.stderr)
	}
	path := filepath.Join(config, "config.json")
	b, err := os.ReadFile(path)
	want := `"` + host + `": {` + "\n\t\t\t" + `"auth": "` + base64.StdEncoding.EncodeToString([]byte("berth:secret")) + `"`
	if err != nil || !strings.Contains(string(b), want) || !strings.Contains(string(b), `"psFormat": "table {{.Names}}"`) {
		t.Errorf("config.json after login: %v\n%s", err, b)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("config.json's mode: %v, %v; want the 0640 it had, as docker keeps it", st.Mode(), err)
	}
	mustBerth(t, root, "push", ref)
	other := filepath.Join(t.TempDir(), "other")
	mustBerth(t, other, "pull", ref)
	if got := mustBerth(t, root, "logout", host); got != "Removing login credentials for "+host+"\n" {
		t.Errorf("logout: %q", got)
	}
	mustBerth(t, other, "rmi", ref)
	if res := runBerth(t, other, nil, "pull", ref); res.code == 0 || !strings.Contains(res.stderr, "UNAUTHORIZED") {
		t.Errorf("pull after logout: exit %d, stderr %q; want the token service's UNAUTHORIZED", res.code, res.stderr)
	}
	if got := mustBerth(t, root, "logout", host); got != "Not logged in to "+host+"\n" {
		t.Errorf("a second logout: %q", got)
	}
}

// TestRegistryKey: the registry a login names and the key docker's
// config.json has for it, for the forms docker takes.
func TestRegistryKey(t *testing.T) {
	for _, c := range []struct {
		args          []string
		registry, key string
	}{
		{nil, "", dockerHubKey},
		{[]string{"docker.io"}, "", dockerHubKey},
		{[]string{"index.docker.io"}, "", dockerHubKey},
		{[]string{"https://index.docker.io/v1/"}, "", dockerHubKey},
		{[]string{"127.0.0.1:5000"}, "127.0.0.1:5000", "127.0.0.1:5000"},
		{[]string{"http://127.0.0.1:5000/v2/"}, "127.0.0.1:5000", "127.0.0.1:5000"},
		{[]string{"registry.example:443"}, "registry.example:443", "registry.example:443"},
	} {
		registry, key, err := registryKey(c.args)
		if err != nil || registry != c.registry || key != c.key {
			t.Errorf("registryKey(%q) = %q, %q, %v; want %q, %q", c.args, registry, key, err, c.registry, c.key)
		}
	}
	if _, _, err := registryKey([]string{"user:pass@127.0.0.1:5000"}); err == nil || strings.Contains(err.Error(), "user:pass") {
		t.Errorf("an address with credentials: %v; want an error that does not show them", err)
	}
}
