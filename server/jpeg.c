/* JPEG encoding and its thread pool: see jpeg.h. */
#include "server/jpeg.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "server/clock.h"
#include "server/log.h"

struct srv_jpeg_encoder {
    tjhandle tj;
    int quality;
    unsigned char *buf; /* worst case for the last size seen (TJFLAG_NOREALLOC) */
    size_t bufsize;
};

size_t srv_jpeg_max_size(int width, int height) {
    unsigned long n = tjBufSize(width, height, TJSAMP_420);
    return n == (unsigned long)-1 ? 0 : (size_t)n;
}

int srv_jpeg_encoder_create(int quality, srv_jpeg_encoder **out, char *err, size_t errlen) {
    *out = NULL;
    if (quality < 1 || quality > 100) {
        snprintf(err, errlen, "JPEG quality %d outside 1..100", quality);
        return -1;
    }
    srv_jpeg_encoder *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->tj = tjInitCompress();
    if (!e->tj) {
        snprintf(err, errlen, "tjInitCompress: %s", tjGetErrorStr2(NULL));
        free(e);
        return -1;
    }
    e->quality = quality;
    *out = e;
    return 0;
}

void srv_jpeg_encoder_destroy(srv_jpeg_encoder *e) {
    if (!e) return;
    tjDestroy(e->tj);
    tjFree(e->buf);
    free(e);
}

int srv_jpeg_encode(srv_jpeg_encoder *e, const uint8_t *rgb, int width, int height, srv_frame *out,
                    char *err, size_t errlen) {
    size_t need = srv_jpeg_max_size(width, height);
    if (!need) {
        snprintf(err, errlen, "bad frame size %dx%d", width, height);
        return -1;
    }
    if (e->bufsize < need) {
        tjFree(e->buf);
        e->buf = tjAlloc((int)need);
        e->bufsize = e->buf ? need : 0;
        if (!e->buf) {
            snprintf(err, errlen, "out of memory for a %zu-byte JPEG buffer", need);
            return -1;
        }
    }
    unsigned char *dst = e->buf;
    unsigned long size = (unsigned long)e->bufsize;
    if (tjCompress2(e->tj, rgb, width, width * 3, height, TJPF_RGB, &dst, &size, TJSAMP_420,
                    e->quality, TJFLAG_NOREALLOC | TJFLAG_FASTDCT)) {
        snprintf(err, errlen, "tjCompress2: %s", tjGetErrorStr2(e->tj));
        return -1;
    }
    if (srv_frame_set_jpeg(out, dst, (size_t)size)) {
        snprintf(err, errlen, "out of memory for a %lu-byte frame", size);
        return -1;
    }
    return 0;
}

/* The pool ------------------------------------------------------------------------------------ */

struct srv_jpeg_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_block *head, *tail; /* blocks with frames not yet taken */
    int next_frame;         /* of head */
    int queued_frames;
    int stop;
    int nthreads;
    pthread_t *threads;
    int quality;
    srv_jpeg_done_fn done;
    void *user;
};

typedef struct thread_arg {
    srv_jpeg_pool *pool;
    srv_jpeg_encoder *enc;
} thread_arg;

static void *jpeg_thread(void *arg) {
    thread_arg *ta = arg;
    srv_jpeg_pool *p = ta->pool;
    srv_jpeg_encoder *enc = ta->enc;
    free(ta);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head) break; /* stop, and nothing left */
        srv_block *b = p->head;
        int i = p->next_frame++;
        p->queued_frames--;
        if (p->next_frame >= b->nframes) {
            p->head = b->next;
            if (!p->head) p->tail = NULL;
            p->next_frame = 0;
        }
        pthread_mutex_unlock(&p->mu);

        char err[256];
        const size_t fsz = (size_t)b->width * (size_t)b->height * 3;
        uint64_t t0 = srv_now_ns();
        int rc = srv_jpeg_encode(enc, b->rgb + (size_t)i * fsz, b->width, b->height, &b->frames[i],
                                 err, sizeof err);
        b->frames[i].timings.jpeg_ms = (float)srv_ns_to_ms(srv_now_ns() - t0);
        if (rc) {
            b->frames[i].len = 0;
            atomic_store(&b->jpeg_failed, 1);
            SRV_LOG(SRV_LOG_ERROR, "jpeg_failed", SRV_KU("session", b->session), SRV_KI("frame", i),
                    SRV_KS("error", err));
        }
        if (atomic_fetch_sub(&b->jpeg_left, 1) == 1) {
            b->t_jpeg_done = srv_now_ns();
            p->done(p->user, b);
        }
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    srv_jpeg_encoder_destroy(enc);
    return NULL;
}

int srv_jpeg_pool_create(int threads, int quality, srv_jpeg_done_fn done, void *user,
                         srv_jpeg_pool **out, char *err, size_t errlen) {
    *out = NULL;
    if (threads < 1) threads = 1;
    srv_jpeg_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)threads, sizeof *p->threads))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->quality = quality;
    p->done = done;
    p->user = user;
    for (int i = 0; i < threads; i++) {
        thread_arg *ta = calloc(1, sizeof *ta);
        int rc = ta ? srv_jpeg_encoder_create(quality, &ta->enc, err, errlen) : -1;
        if (!ta) snprintf(err, errlen, "out of memory");
        if (!rc) {
            ta->pool = p;
            rc = pthread_create(&p->threads[i], NULL, jpeg_thread, ta);
            if (rc) {
                snprintf(err, errlen, "pthread_create: %s", strerror(rc));
                srv_jpeg_encoder_destroy(ta->enc);
            }
        }
        if (rc) {
            free(ta);
            srv_jpeg_pool_destroy(p);
            return -1;
        }
        p->nthreads++;
    }
    *out = p;
    return 0;
}

void srv_jpeg_pool_submit(srv_jpeg_pool *p, srv_block *b) {
    atomic_store(&b->jpeg_left, b->nframes);
    atomic_store(&b->jpeg_failed, 0);
    b->t_jpeg_submit = srv_now_ns();
    b->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = b;
    else
        p->head = b;
    p->tail = b;
    p->queued_frames += b->nframes;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int srv_jpeg_pool_queued_frames(srv_jpeg_pool *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->queued_frames;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void srv_jpeg_pool_destroy(srv_jpeg_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}
