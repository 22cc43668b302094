/*
 * The image's root filesystem, for a guest booted with
 * supermachine.root=/dev/vda on its command line (an OCI image; see
 * src/lib/oci_image.c). PID 1 starts on the initramfs and turns the guest
 * into the image:
 *
 *   /dev/vda  (squashfs, read-only, shared by every VM of the image)
 *       mounted on /sm/image
 *   tmpfs     on /sm/rw: upper/ and work/ of the overlay; what the VM writes
 *             lives in its memory, and so in its snapshots
 *   overlay   lower /sm/image, upper /sm/rw/upper  on /sm/root
 *   /proc /sys /dev /tmp /run  moved into /sm/root, which becomes / (the
 *             initramfs stays underneath, unreachable)
 *
 * The image's own settings come from IMAGE_CONF in the image, written by the
 * host when it built the root filesystem. It is a list of NUL-terminated
 * strings, taken in pairs:
 *
 *   key     value
 *   "env"   "KEY=VALUE"   the image's Env, set in the agent's environment, so
 *                         every command starts from it (a request's env wins)
 *   "cwd"   "/path"       WorkingDir: the agent's directory, where commands
 *                         start unless a request names another
 *   "user"  "name[:group]" or "uid[:gid]": the image's User; commands run as
 *                         that user (see image_user_*)
 *
 * Unknown keys are ignored; the file is at most IMAGE_CONF_MAX bytes. Once
 * read, the folder holding it is removed through the overlay, so commands see
 * the image exactly as the registry had it.
 *
 * Also: the hostname (IMAGE_HOSTNAME) and an /etc/hosts that names it, in the
 * overlay's writable layer; a request's hostname (WIRE_REQ_HOSTNAME)
 * replaces it, in the kernel and in both files (image_hostname_set).
 */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROOT_ARG       "supermachine.root="
#define IMAGE_DIR      "/sm/image"
#define RW_DIR         "/sm/rw"
#define NEW_ROOT       "/sm/root"
#define CONF_DIR       "/.supermachine"
#define IMAGE_CONF     CONF_DIR "/image.conf"
#define IMAGE_CONF_MAX (1u << 20)
#define IMAGE_HOSTNAME "supermachine"

static struct {
    bool set;          /* the image names a user */
    bool ok;           /* ... and it resolved */
    uid_t uid;
    gid_t gid;
    char home[256];
    char error[320];   /* why it did not resolve */
} image_user;
static bool image_sets_home; /* the image's Env has HOME: the user's home does not replace it */

/* The value of ROOT_ARG on the kernel command line, or false. */
static bool root_device(char *dev, size_t cap)
{
    return cmdline_token(ROOT_ARG, dev, cap) && dev[0] != 0;
}

static bool mount_or_log(const char *src, const char *dst, const char *type, unsigned long flags, const char *opts)
{
    mkdir(dst, 0755);
    if (mount(src, dst, type, flags, opts) == 0)
        return true;
    agent_log("mount %s on %s (%s): %s", src, dst, type ? type : "move", strerror(errno));
    return false;
}

static bool build_overlay(const char *dev)
{
    mkdir("/sm", 0755);
    if (!mount_or_log(dev, IMAGE_DIR, "squashfs", MS_RDONLY, NULL) &&
        !mount_or_log(dev, IMAGE_DIR, "erofs", MS_RDONLY, NULL))
        return false;
    if (!mount_or_log("tmpfs", RW_DIR, "tmpfs", 0, "mode=0755"))
        return false;
    mkdir(RW_DIR "/upper", 0755);
    mkdir(RW_DIR "/work", 0755);
    return mount_or_log("overlay", NEW_ROOT, "overlay", 0,
                        "lowerdir=" IMAGE_DIR ",upperdir=" RW_DIR "/upper,workdir=" RW_DIR "/work");
}

/* Moves the initramfs's /proc, /sys, /dev, /tmp, /run into the new root and
 * makes it /. */
static bool enter_new_root(void)
{
    static const char *const moved[] = { "/proc", "/sys", "/dev", "/tmp", "/run" };
    for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
        char dst[64];
        snprintf(dst, sizeof dst, NEW_ROOT "%s", moved[i]);
        if (!mount_or_log(moved[i], dst, NULL, MS_MOVE, NULL))
            return false;
    }
    if (chdir(NEW_ROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0) {
        agent_log("switching to the image's root: %s", strerror(errno));
        return false;
    }
    return true;
}

/* ---- the image's settings ------------------------------------------------ */

static void apply_setting(const char *key, const char *value, const char **user)
{
    if (!strcmp(key, "env")) {
        const char *eq = strchr(value, '=');
        if (eq && eq != value) {
            char name[256];
            size_t k = (size_t)(eq - value);
            if (k < sizeof name) {
                memcpy(name, value, k);
                name[k] = 0;
                setenv(name, eq + 1, 1);
                image_sets_home |= !strcmp(name, "HOME");
            }
        }
    } else if (!strcmp(key, "cwd")) {
        if (value[0] == '/' && chdir(value) < 0)
            agent_log("the image's working directory %s: %s", value, strerror(errno));
        else if (value[0] == '/')
            setenv("PWD", value, 1);
    } else if (!strcmp(key, "user")) {
        *user = value;
    }
}

/* Reads IMAGE_CONF (in the new root); the buffer it returns holds `user`. */
static char *read_settings(const char **user)
{
    int fd = open(IMAGE_CONF, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(IMAGE_CONF_MAX + 1);
    size_t len = 0;
    ssize_t n;
    while (buf && len < IMAGE_CONF_MAX && (n = read(fd, buf + len, IMAGE_CONF_MAX - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (!buf)
        return NULL;
    buf[len] = 0;
    /* Pairs of NUL-terminated strings; a trailing half pair is dropped. */
    size_t at = 0;
    while (at < len) {
        const char *key = buf + at;
        size_t klen = strnlen(key, len - at);
        if (at + klen + 1 >= len)
            break;
        const char *value = key + klen + 1;
        size_t vlen = strnlen(value, len - (at + klen + 1));
        if (at + klen + 1 + vlen >= len)
            break;
        apply_setting(key, value, user);
        at += klen + 1 + vlen + 1;
    }
    return buf;
}

static bool parse_id(const char *s, unsigned long *out)
{
    char *end;
    if (!*s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return !*end && !errno && *out <= 0x7fffffffu;
}

/* Resolves "name[:group]" or "uid[:gid]" against the image's passwd and group. */
static void resolve_user(const char *spec)
{
    char u[256], *g;
    image_user.set = true;
    snprintf(u, sizeof u, "%s", spec);
    g = strchr(u, ':');
    if (g)
        *g++ = 0;
    unsigned long id;
    struct passwd *pw = parse_id(u, &id) ? getpwuid((uid_t)id) : getpwnam(u);
    if (!pw && !parse_id(u, &id)) {
        snprintf(image_user.error, sizeof image_user.error,
                 "the image's user '%s' is not in its /etc/passwd", u);
        return;
    }
    image_user.uid = pw ? pw->pw_uid : (uid_t)id;
    image_user.gid = pw ? pw->pw_gid : (gid_t)id;
    snprintf(image_user.home, sizeof image_user.home, "%s", pw && pw->pw_dir ? pw->pw_dir : "/");
    if (g) {
        struct group *gr = parse_id(g, &id) ? NULL : getgrnam(g);
        if (!gr && !parse_id(g, &id)) {
            snprintf(image_user.error, sizeof image_user.error,
                     "the image's group '%s' is not in its /etc/group", g);
            return;
        }
        image_user.gid = gr ? gr->gr_gid : (gid_t)id;
    }
    image_user.ok = true;
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        agent_log("cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static bool image_root_active; /* image_root_setup wrote /etc/hostname */

/* /etc/hostname and an /etc/hosts naming the host (name is at most
 * WIRE_MAX_HOSTNAME bytes). */
static void write_host_files(const char *name)
{
    char text[128 + WIRE_MAX_HOSTNAME];
    mkdir("/etc", 0755);
    snprintf(text, sizeof text, "%s\n", name);
    write_file("/etc/hostname", text);
    snprintf(text, sizeof text, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                "127.0.1.1\t%s\n", name);
    write_file("/etc/hosts", text);
}

static void name_the_host(void)
{
    if (sethostname(IMAGE_HOSTNAME, strlen(IMAGE_HOSTNAME)) < 0)
        agent_log("sethostname: %s", strerror(errno));
    write_host_files(IMAGE_HOSTNAME);
    image_root_active = true;
}

bool image_hostname_set(const char *name, char *why, size_t cap)
{
    if (!wire_hostname_ok(name)) {
        snprintf(why, cap, "hostname: '%.70s' is not 1..%u letters, digits, '.' or '-'",
                 name ? name : "", WIRE_MAX_HOSTNAME);
        return false;
    }
    if (sethostname(name, strlen(name)) < 0) {
        snprintf(why, cap, "sethostname(%s): %s", name, strerror(errno));
        return false;
    }
    if (image_root_active)
        write_host_files(name);
    return true;
}

bool image_root_setup(void)
{
    char dev[128];
    if (!root_device(dev, sizeof dev))
        return false;
    if (!build_overlay(dev) || !enter_new_root()) {
        agent_log("the image's root filesystem on %s is not usable; commands run in the initramfs", dev);
        return false;
    }
    const char *user = NULL;
    char *settings = read_settings(&user);
    if (user && *user && strcmp(user, "root") && strcmp(user, "0") && strcmp(user, "0:0"))
        resolve_user(user);
    if (image_user.ok && !image_sets_home)
        setenv("HOME", image_user.home, 1);
    free(settings);
    /* Through the overlay: a whiteout in the writable layer hides it. */
    if (unlink(IMAGE_CONF) < 0 && errno != ENOENT)
        agent_log("cannot hide %s: %s", IMAGE_CONF, strerror(errno));
    rmdir(CONF_DIR);
    name_the_host();
    return true;
}

const char *image_user_error(void)
{
    return image_user.set && !image_user.ok ? image_user.error : NULL;
}

bool image_user_id(uint32_t *uid, uint32_t *gid)
{
    if (!image_user.ok)
        return false;
    *uid = (uint32_t)image_user.uid;
    *gid = (uint32_t)image_user.gid;
    return true;
}
