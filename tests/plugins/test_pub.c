/*
 * test_pub.c - a plugin that publishes known messages on demand, for the
 * transport's integration tests (tests/integration/check_transport.c).
 *
 * It declares the topics the KATO Dashboard protocol knows, plus two more:
 *   state:  metrics, containers, sessions, host, kato_health
 *   event:  session_events, system_alerts, test_events (ring of `ring`
 *           messages, for replay-gap tests)
 * and publishes what it is told through a FIFO (`control`, created if
 * missing), one command per line:
 *
 *   pub TOPIC JSON        publish the JSON object on TOPIC
 *   burst TOPIC N PAD     publish N objects {"i": k, "pad": "xxx..."} (PAD
 *                         bytes of padding) on TOPIC, k = 1..N
 *
 * Tests see a command's effect through the daemon itself (WebSocket
 * messages, or last_seq in GET /api/v1/topics). The FIFO is opened
 * read-write so it never reports EOF when a writer goes away.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <katomon/plugin.h>

static const struct km_conf_key config_keys[] = {
    {"control", KM_CONF_STRING, NULL, 0, 0, "FIFO the tests write commands to"},
    {"ring", KM_CONF_INT, "16", 1, 65536, "ring size of test_events"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

/* The topics, in declaration order. */
static const struct {
    const char *name;        /* topic name */
    enum km_topic_kind kind; /* state or event */
} topics[] = {
    {"metrics", KM_TOPIC_STATE},       {"containers", KM_TOPIC_STATE},
    {"sessions", KM_TOPIC_STATE},      {"host", KM_TOPIC_STATE},
    {"kato_health", KM_TOPIC_STATE},   {"session_events", KM_TOPIC_EVENT},
    {"system_alerts", KM_TOPIC_EVENT}, {"test_events", KM_TOPIC_EVENT},
};
#define N_TOPICS (sizeof topics / sizeof topics[0])

static struct {
    const struct km_host *host;   /* the core's interface */
    struct km_ctx *ctx;           /* our context */
    struct km_topic *t[N_TOPICS]; /* declared topics */
    int fd;                       /* the FIFO */
    struct km_io *io;             /* the host's read watch on fd */
    char line[65536];             /* partial command line */
    size_t len;                   /* bytes in line */
    long long commands;           /* lines processed */
} g;

static struct km_topic *find(const char *name)
{
    for (size_t i = 0; i < N_TOPICS; i++)
        if (strcmp(topics[i].name, name) == 0)
            return g.t[i];
    return NULL;
}

static void command(char *line)
{
    char topic[80];
    int n = 0;

    if (sscanf(line, "pub %79s %n", topic, &n) == 1 && n > 0) {
        json_error_t err;
        json_t *body = json_loads(line + n, 0, &err);
        struct km_topic *t = find(topic);
        if (!body || !t) {
            g.host->log(g.ctx, KM_LOG_ERROR, "bad pub line: %s",
                        body ? "topic" : err.text);
            json_decref(body);
        } else {
            g.host->publish(g.ctx, t, body);
        }
    } else {
        long count = 0, pad = 0;
        if (sscanf(line, "burst %79s %ld %ld", topic, &count, &pad) == 3 && find(topic) &&
            count > 0 && pad >= 0 && pad < (1 << 24)) {
            char *p = malloc((size_t)pad + 1);
            memset(p, 'x', (size_t)pad);
            p[pad] = '\0';
            for (long i = 1; i <= count; i++)
                g.host->publish(g.ctx, find(topic),
                                json_pack("{s:I, s:s}", "i", (json_int_t)i, "pad", p));
            free(p);
        } else {
            g.host->log(g.ctx, KM_LOG_ERROR, "unknown command: %.80s", line);
        }
    }
    g.commands++;
}

static void on_readable(int fd, unsigned events, void *arg)
{
    for (;;) {
        ssize_t n = read(g.fd, g.line + g.len, sizeof g.line - 1 - g.len);
        if (n <= 0)
            return;
        g.len += (size_t)n;
        char *nl;
        while ((nl = memchr(g.line, '\n', g.len))) {
            *nl = '\0';
            command(g.line);
            size_t used = (size_t)(nl - g.line) + 1;
            memmove(g.line, nl + 1, g.len - used);
            g.len -= used;
        }
        if (g.len == sizeof g.line - 1)
            g.len = 0; /* a line too long: drop it */
    }
}

static int pub_init(struct km_ctx *ctx, const struct km_host *host)
{
    const char *control;

    memset(&g, 0, sizeof g);
    g.host = host;
    g.ctx = ctx;
    g.fd = -1;
    for (size_t i = 0; i < N_TOPICS; i++) {
        struct km_topic_def def = {
            .name = topics[i].name,
            .kind = topics[i].kind,
            .ring_size = strcmp(topics[i].name, "test_events") == 0
                             ? (unsigned)host->config_int(ctx, "ring")
                             : 0,
            .description = "test_pub",
        };
        int err = 0;
        if (!(g.t[i] = host->topic_declare(ctx, &def, &err))) {
            host->log(ctx, KM_LOG_ERROR, "declare %s: %s", def.name, host->strerror(err));
            return -1;
        }
    }
    control = host->config_string(ctx, "control");
    if (control) {
        if (mkfifo(control, 0600) != 0 && errno != EEXIST) {
            host->log(ctx, KM_LOG_ERROR, "mkfifo %s: %s", control, strerror(errno));
            return -1;
        }
        g.fd = open(control, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (g.fd < 0) {
            host->log(ctx, KM_LOG_ERROR, "open %s: %s", control, strerror(errno));
            return -1;
        }
        if (!(g.io = host->io_add(ctx, g.fd, KM_IO_READ, on_readable, NULL))) {
            host->log(ctx, KM_LOG_ERROR, "watch %s: out of memory", control);
            return -1;
        }
    }
    return 0;
}

static void pub_shutdown(struct km_ctx *ctx)
{
    if (g.io)
        g.host->io_del(ctx, g.io);
    if (g.fd >= 0)
        close(g.fd);
    g.io = NULL;
    g.fd = -1;
}

KM_PLUGIN_DEFINE(.name = "test_pub", .version = "1",
                 .description = "publishes what the tests tell it (FIFO)",
                 .config = config_keys, .init = pub_init, .shutdown = pub_shutdown);
