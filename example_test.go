package berth_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/berth-dev/berth"
)

// A test suite's database container: started in milliseconds, gone when
// the test ends. (Examples compile as documentation; they need root and an
// image in the store to run.)
func ExampleRuntime_Run() {
	ctx := context.Background()
	rt, err := berth.New("") // /var/lib/berth
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close() // kills attached containers

	c, err := rt.Run(ctx, "busybox", &berth.Process{
		Args:   []string{"sh", "-c", "echo ready; exec sleep 300"},
		Stdout: os.Stdout,
	}, berth.WithName("db"), berth.WithAutoRemove(), berth.WithResources(berth.Resources{Memory: 256 << 20}))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx, time.Second)
	// Ready when it says so (or: c.WaitListening(ctx, "tcp", 5432)).
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitLog(wctx, "ready"); err != nil {
		log.Fatal(err)
	}
	st, _ := c.State(ctx)
	fmt.Println(st.Status)
}

// A CI step: build an artifact in a container, with a cache mount kept
// across builds, and take the files of the last stage out into a
// directory (docker build -o out -); the image is stored as well.
func ExampleRuntime_Build() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	dockerfile := `FROM busybox AS build
RUN --mount=type=cache,target=/cache echo built >> /cache/log && mkdir /out && cp /cache/log /out/report
FROM scratch
COPY --from=build /out/ /
`
	img, err := rt.Build(ctx, "", // no context: the Dockerfile is all
		berth.WithDockerfileContent(dockerfile),
		berth.WithBuildLabels(map[string]string{"ci.job": "42"}),
		berth.WithBuildNetwork("none"),
		berth.WithBuildOutputDir("out"),
		berth.WithBuildProgress(func(ev berth.BuildEvent) {
			if ev.Output == "" {
				fmt.Printf("#%d %s\n", ev.Step, ev.Instruction)
			}
		}))
	if err != nil {
		log.Fatal(err)
	}
	report, err := os.ReadFile("out/report")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(img.Config.Labels["ci.job"], " ", string(report))
}

// A test's service that says when it is ready through its image's
// HEALTHCHECK (testcontainers' wait.ForHealthCheck).
func ExampleContainer_WaitHealthy() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "sleep 1; touch /ready; exec sleep 300"}},
		berth.WithAutoRemove(), berth.WithHealthcheck(berth.HealthConfig{
			Test:        []string{"CMD-SHELL", "test -f /ready"},
			Interval:    100 * time.Millisecond,
			StartPeriod: 10 * time.Second,
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx, 0)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.WaitHealthy(wctx); err != nil {
		log.Fatal(err)
	}
}

// A step of a CI agent: run a command, stream its output, get its exit code.
func ExampleContainer_Wait() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sh", "-c", "exit 3"}}, berth.WithAutoRemove())
	if err != nil {
		log.Fatal(err)
	}
	var exit *berth.ExitError
	if err := c.Wait(ctx); errors.As(err, &exit) {
		fmt.Println("exit code", exit.Code)
	}
}

// A container that outlives the program: the next program finds it by
// name, reads its logs and stops it.
func ExampleWithDetach() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	if _, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"sleep", "3600"}},
		berth.WithDetach(), berth.WithName("worker")); err != nil {
		log.Fatal(err)
	}

	// Later, in another program on the same root:
	c, err := rt.Container(ctx, "worker")
	if err != nil {
		log.Fatal(err)
	}
	c.Logs(ctx, os.Stdout, os.Stderr, berth.WithTail(10))
	c.Stop(ctx, -1) // the container's stop timeout
	c.Remove(ctx)
}

// A service that is started again whenever it crashes, after docker's
// back-off, until something stops it.
func ExampleWithRestartPolicy() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	c, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"httpd", "-f", "-p", "8080"}},
		berth.WithDetach(), berth.WithName("web"),
		berth.WithRestartPolicy(berth.RestartPolicy{Name: berth.RestartOnFailure, MaxRetries: 5}))
	if err != nil {
		log.Fatal(err)
	}
	info, err := c.Inspect(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.State.Status, info.RestartCount) // "restarting" between a crash and its restart
	c.Stop(ctx, -1)                                   // stays stopped: the policy leaves alone what Stop ended
	c.Remove(ctx)
}

// Give a running service more memory and a restart policy, as docker
// update does: the other limits stay as they are.
func ExampleContainer_Update() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	c, err := rt.Container(ctx, "web") // run earlier WithDetach
	if err != nil {
		log.Fatal(err)
	}
	err = c.Update(ctx, func(u *berth.ContainerUpdate) error {
		u.Resources.Memory = 512 << 20
		u.RestartPolicy = berth.RestartPolicy{Name: berth.RestartUnlessStopped}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// An orchestration tool's service: stopped by one program, started again
// by the next, with what it wrote kept.
func ExampleContainer_Start() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	c, err := rt.Container(ctx, "worker") // run earlier WithDetach, since stopped
	if err != nil {
		log.Fatal(err)
	}
	// Runs on after this program, as Run made it. (c.Restart(ctx, -1)
	// stops a running one first, with its stop timeout.)
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
}

// Exec into a running container and commit what it changed.
func ExampleContainer_Commit() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	c, err := rt.Container(ctx, "worker")
	if err != nil {
		log.Fatal(err)
	}
	e, err := c.Exec(ctx, &berth.Process{Args: []string{"sh", "-c", "echo configured > /etc/app.conf"}})
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	img, err := c.Commit(ctx, berth.WithCommitTag("worker:configured"), berth.WithChanges(`CMD ["cat", "/etc/app.conf"]`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.ShortID(), img.RepoTags)
}

// A test's service and its client on one network, the service also
// published on the host: the client finds it by name, the test dials it
// through the published port, or straight into the container.
func ExampleRuntime_CreateNetwork() {
	ctx := context.Background()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	if _, err := rt.CreateNetwork(ctx, "stack"); err != nil {
		log.Fatal(err)
	}
	web, err := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"httpd", "-f", "-p", "80"}},
		berth.WithName("web"), berth.WithNetwork("stack", "www"), berth.WithPublish("127.0.0.1::80"))
	if err != nil {
		log.Fatal(err)
	}
	if err := web.WaitListening(ctx, "tcp", 80); err != nil {
		log.Fatal(err)
	}
	ports, _ := web.Ports(ctx)
	fmt.Println("published at", ports[0].HostIP, ports[0].HostPort)

	client, _ := rt.Run(ctx, "busybox", &berth.Process{Args: []string{"wget", "-q", "-O", "-", "http://www/"}, Stdout: os.Stdout},
		berth.WithNetwork("stack"), berth.WithAutoRemove())
	client.Wait(ctx)

	conn, err := web.Dial(ctx, "tcp", "127.0.0.1:80") // no port needed
	if err == nil {
		conn.Close()
	}
}

// An orchestration tool's watcher: every container of the root that dies,
// whichever program started it, with its exit code, until ctx ends.
func ExampleRuntime_Events() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := berth.New("")
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	err = rt.Events(ctx, func(ev berth.Event) error {
		if ev.Type == "container" && ev.Action == "die" {
			fmt.Println(ev.Attributes["name"], "exited with", ev.Attributes["exitCode"])
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
