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
// push fails before login, login refuses a wrong password and writes
// nothing, login stores the credentials in docker's config.json (its
// other settings kept, mode 0600), push and pull then pass, and after
// logout pull fails again.
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
	if err := os.WriteFile(filepath.Join(config, "config.json"), []byte(`{"experimental": "enabled"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	root := containerSetup(t)
	ref := host + "/private/busybox:1"
	mustBerth(t, root, "tag", "busybox", ref)
	if res := runBerth(t, root, nil, "push", ref); res.code == 0 {
		t.Fatalf("push before login succeeded:\n%s", res.stdout)
	}
	if res := runBerth(t, root, []byte("wrong\n"), "login", "-u", "berth", "--password-stdin", host); res.code != 1 || strings.Contains(res.stdout, "Login Succeeded") {
		t.Errorf("login with a wrong password: exit %d, %q, %q", res.code, res.stdout, res.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(config, "config.json")); strings.Contains(string(b), host) {
		t.Errorf("a refused login wrote credentials: %s", b)
	}
	if res := runBerth(t, root, []byte("secret\n"), "login", "-u", "berth", "--password-stdin", host); res.code != 0 || res.stdout != "Login Succeeded\n" {
		t.Fatalf("login: exit %d, %q, %q", res.code, res.stdout, res.stderr)
	}
	path := filepath.Join(config, "config.json")
	b, err := os.ReadFile(path)
	want := `"` + host + `": {` + "\n\t\t\t" + `"auth": "` + base64.StdEncoding.EncodeToString([]byte("berth:secret")) + `"`
	if err != nil || !strings.Contains(string(b), want) || !strings.Contains(string(b), `"experimental": "enabled"`) {
		t.Errorf("config.json after login: %v\n%s", err, b)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config.json's mode: %v, %v; want 0600", st.Mode(), err)
	}
	mustBerth(t, root, "push", ref)
	other := filepath.Join(t.TempDir(), "other")
	mustBerth(t, other, "pull", ref)
	if got := mustBerth(t, root, "logout", host); got != "Removing login credentials for "+host+"\n" {
		t.Errorf("logout: %q", got)
	}
	mustBerth(t, other, "rmi", ref)
	if res := runBerth(t, other, nil, "pull", ref); res.code == 0 {
		t.Errorf("pull after logout succeeded")
	}
	if got := mustBerth(t, root, "logout", host); got != "Not logged in to "+host+"\n" {
		t.Errorf("a second logout: %q", got)
	}
}
