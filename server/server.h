/* The wmserve process as one call: everything from opening the model to the end of a graceful
 * shutdown. main.c parses the configuration and sets up logging, then calls this. */
#ifndef WM_SERVER_SERVER_H
#define WM_SERVER_SERVER_H

#include "server/config.h"

/* Runs until SIGINT/SIGTERM has drained and closed everything. Returns the process exit status:
 * 0 after a clean shutdown, 1 when start-up failed (logged). */
int srv_server_main(const srv_config *cfg);

#endif
