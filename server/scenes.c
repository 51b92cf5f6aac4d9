/* Start scenes: see scenes.h. */
#include "server/scenes.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/image.h"
#include "server/log.h"

typedef struct scene {
    char name[PROTO_MAX_NAME];
    float *planes; /* [3][h][w] */
} scene;

struct srv_scenes {
    int n, width, height;
    scene s[PROTO_MAX_LIST];
};

/* A deterministic outdoor picture: sky gradient with a sun, two ridges of hills, grass, and a road
 * running to the horizon with a dashed centre line. Enough structure for the encoders to give the
 * model a plausible world to start from. */
int srv_scene_default_rgb(int w, int h, img_rgb8 *out) {
    memset(out, 0, sizeof *out);
    if (w < 8 || h < 8) return -1;
    out->pixels = malloc((size_t)w * (size_t)h * 3);
    if (!out->pixels) return -1;
    out->width = w;
    out->height = h;
    const double horizon = 0.46 * h;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double fx = (double)x / w, fy = (double)y / h;
            double r, g, b;
            /* sky */
            double t = fy / 0.46;
            r = 110 + 120 * t, g = 165 + 70 * t, b = 235 + 10 * t;
            double dx = fx - 0.78, dy = fy - 0.14;
            double sun = sqrt(dx * dx + dy * dy * (double)h * h / ((double)w * w));
            if (sun < 0.045)
                r = 255, g = 244, b = 200;
            else if (sun < 0.09) {
                double k = (0.09 - sun) / 0.045 * 0.5;
                r += (255 - r) * k, g += (240 - g) * k, b += (200 - b) * k;
            }
            /* far and near hills */
            double far = horizon - h * (0.10 + 0.05 * sin(fx * 9.0 + 1.3) + 0.03 * sin(fx * 23.0));
            double nearh = horizon - h * (0.04 + 0.04 * sin(fx * 5.0 + 4.0));
            if (y > far) r = 120, g = 140, b = 170;
            if (y > nearh) r = 70, g = 120, b = 75;
            if (y >= horizon) {
                double d = (y - horizon) / (h - horizon); /* 0 at the horizon, 1 at the bottom */
                r = 60 + 50 * d, g = 125 + 50 * d, b = 50 + 20 * d;
                /* grass stripes */
                if (((int)(8.0 / (d + 0.05))) % 2) r *= 0.92, g *= 0.92, b *= 0.92;
                double half = 0.03 + 0.42 * d; /* road half-width as a fraction of the width */
                double off = fabs(fx - 0.5);
                if (off < half) {
                    r = g = b = 95 + 25 * d;
                    if (off < 0.012 * (0.2 + d) && ((int)(6.0 / (d + 0.08))) % 2)
                        r = g = 235, b = 120;
                } else if (off < half * 1.06) {
                    r = g = b = 215;
                }
            }
            uint8_t *p = out->pixels + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
            p[1] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
            p[2] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
        }
    return 0;
}

static int add_scene(srv_scenes *sc, const char *name, const img_rgb8 *img, char *err,
                     size_t errlen) {
    scene *s = &sc->s[sc->n];
    size_t n = 3 * (size_t)sc->width * (size_t)sc->height;
    s->planes = malloc(n * sizeof(float));
    if (!s->planes) {
        snprintf(err, errlen, "out of memory for scene '%s'", name);
        return -1;
    }
    if (img_prepare(img, sc->width, sc->height, s->planes, err, errlen)) {
        free(s->planes);
        s->planes = NULL;
        return -1;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    sc->n++;
    return 0;
}

static int image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot &&
           (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* A scene name is the file's stem; it must be a plain word (letters, digits, '-', '_', '.'). */
static int stem(const char *file, char *out, size_t outlen) {
    const char *dot = strrchr(file, '.');
    size_t n = (size_t)(dot - file);
    if (n == 0 || n >= outlen) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = file[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return -1;
    }
    memcpy(out, file, n);
    out[n] = '\0';
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int srv_scenes_load(const char *dir, int width, int height, size_t max_pixels, srv_scenes **out,
                    char *err, size_t errlen) {
    *out = NULL;
    srv_scenes *sc = calloc(1, sizeof *sc);
    if (!sc) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sc->width = width;
    sc->height = height;
    int rc = 0;
    if (!dir) {
        img_rgb8 img;
        if (srv_scene_default_rgb(640, 352, &img)) {
            snprintf(err, errlen, "out of memory for the default scene");
            rc = -1;
        } else {
            rc = add_scene(sc, "default", &img, err, errlen);
            img_free(&img);
        }
    } else {
        DIR *d = opendir(dir);
        if (!d) {
            snprintf(err, errlen, "--scenes %s: cannot open the folder", dir);
            rc = -1;
        }
        char *names[256];
        int nn = 0;
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL && nn < 256)
            if (de->d_name[0] != '.' && image_ext(de->d_name))
                if ((names[nn] = strdup(de->d_name)) != NULL) nn++;
        if (d) closedir(d);
        qsort(names, (size_t)nn, sizeof *names, cmp_str);
        for (int i = 0; i < nn && !rc; i++) {
            char name[PROTO_MAX_NAME], path[4096], lerr[256];
            if (stem(names[i], name, sizeof name)) {
                SRV_LOG(SRV_LOG_WARN, "scene_skipped", SRV_KS("file", names[i]),
                        SRV_KS("reason", "name is not a plain word under 64 characters"));
                continue;
            }
            if (srv_scenes_find(sc, name) >= 0) {
                SRV_LOG(SRV_LOG_WARN, "scene_skipped", SRV_KS("file", names[i]),
                        SRV_KS("reason", "duplicate scene name"));
                continue;
            }
            if (sc->n == PROTO_MAX_LIST) {
                SRV_LOG(SRV_LOG_WARN, "scene_skipped", SRV_KS("file", names[i]),
                        SRV_KS("reason", "at most 16 scenes are offered"));
                continue;
            }
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            img_rgb8 img;
            if (img_load(path, max_pixels, &img, lerr, sizeof lerr)) {
                SRV_LOG(SRV_LOG_WARN, "scene_skipped", SRV_KS("file", path),
                        SRV_KS("reason", lerr));
                continue;
            }
            rc = add_scene(sc, name, &img, err, errlen);
            img_free(&img);
        }
        for (int i = 0; i < nn; i++) free(names[i]);
        if (!rc && sc->n == 0) {
            snprintf(err, errlen, "--scenes %s: no usable PNG or JPEG images", dir);
            rc = -1;
        }
    }
    if (rc) {
        srv_scenes_destroy(sc);
        return -1;
    }
    *out = sc;
    return 0;
}

void srv_scenes_destroy(srv_scenes *sc) {
    if (!sc) return;
    for (int i = 0; i < sc->n; i++) free(sc->s[i].planes);
    free(sc);
}

int srv_scenes_count(const srv_scenes *sc) {
    return sc->n;
}

const char *srv_scenes_name(const srv_scenes *sc, int i) {
    return i >= 0 && i < sc->n ? sc->s[i].name : NULL;
}

int srv_scenes_find(const srv_scenes *sc, const char *name) {
    for (int i = 0; i < sc->n; i++)
        if (!strcmp(sc->s[i].name, name)) return i;
    return -1;
}

const float *srv_scenes_planes(const srv_scenes *sc, int i) {
    return i >= 0 && i < sc->n ? sc->s[i].planes : NULL;
}
