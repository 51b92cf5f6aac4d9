/* Start scenes offered to players: the PNG/JPEG images of the --scenes folder (name = file stem, at
 * most PROTO_MAX_LIST, sorted by name), or without that flag one built-in procedurally generated
 * scene called "default". Each is decoded and prepared once at start-up (engine/image.h
 * img_prepare) into the [3][h][w] planes that start an engine session, and stays read-only for the
 * process's life, so the engine worker may read them from its thread. */
#ifndef WM_SERVER_SCENES_H
#define WM_SERVER_SCENES_H

#include <stddef.h>

#include "engine/image.h"
#include "proto/proto.h"

typedef struct srv_scenes srv_scenes;

/* dir NULL: the built-in scene only. width x height: the model's video size. */
int srv_scenes_load(const char *dir, int width, int height, size_t max_pixels, srv_scenes **out,
                    char *err, size_t errlen);
void srv_scenes_destroy(srv_scenes *sc);
int srv_scenes_count(const srv_scenes *sc);
const char *srv_scenes_name(const srv_scenes *sc, int i);
int srv_scenes_find(const srv_scenes *sc, const char *name); /* index or -1 */
const float *srv_scenes_planes(const srv_scenes *sc, int i);

/* The built-in scene as RGB8 (w, h >= 8). 0 or -1 (out of memory). */
int srv_scene_default_rgb(int w, int h, img_rgb8 *out);

#endif
