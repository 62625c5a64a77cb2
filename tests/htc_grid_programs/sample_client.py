# A client written as HTC-Grid's published sample client is: HTC-Grid's import line, its
# config file ($AGENT_CONFIG_FILE) and credentials ($USERNAME/$PASSWORD), its flags, its
# multiprocessing, and reports through logging.info only. Run it with
#     python -m htcgrid.compat run sample_client.py -n 1 --job_size 3 ...
import argparse
import json
import logging
import os
import sys
import time
from multiprocessing import Process

from api.connector import AWSConnector

config_path = os.environ.get("AGENT_CONFIG_FILE", "/etc/agent/Agent_config.tfvars.json")
with open(config_path) as config_file:
    client_config = json.load(config_file)

parser = argparse.ArgumentParser("Mock compute engine sessions, verified")
parser.add_argument("-n", "--njobs", type=int, default=1)
parser.add_argument("--job_size", type=int, default=1)
parser.add_argument("--job_batch_size", type=int, default=1)
parser.add_argument("--nthreads", type=int, default=1)
parser.add_argument("--do_print", type=bool, default=False)
parser.add_argument("--generate_payload_options", type=str, default=None)
parser.add_argument("--worker_type", choices=["mock_compute_engine"], default="mock_compute_engine")
parser.add_argument("--worker_arguments", type=str, default="1000 1 100")
parser.add_argument("--log", "-l", type=str, default="warning")
options = parser.parse_args()


def one_process(thread_id):
    connector = AWSConnector()
    connector.init(
        client_config,
        username=os.environ.get("USERNAME", ""),
        password=os.environ.get("PASSWORD", ""),
    )
    connector.authenticate()
    arguments = options.worker_arguments.split(" ")
    for iteration in range(options.njobs):
        submissions = []
        for _ in range(options.job_batch_size):
            tasks = [{"worker_arguments": arguments} for _ in range(options.job_size)]
            submission = connector.send(tasks)
            logging.info("Submitted session %s", submission.session_id)
            submissions.append(submission)
        for submission in submissions:
            logging.info("Waiting for session %s", submission["session_id"])
            results = connector.get_results(submission, timeout_sec=3600 * 1000)
            metadata = results["metadata"].to_dict()
            if metadata["tasks_in_response"] != options.job_size:
                logging.info("Wrong count %s", metadata)
                sys.exit(1)
            for output in results["finished_OUTPUT"]:
                if options.do_print:
                    logging.info(output)
                if output.rstrip() != arguments[0]:
                    logging.info("Wrong output %s", output)
                    sys.exit(1)
        logging.info("Time from start %s", time.time() - start)


start = time.time()
processes = [Process(target=one_process, args=(i,)) for i in range(options.nthreads)]
for process in processes:
    process.start()
for process in processes:
    process.join()
    if process.exitcode != 0:
        sys.exit(process.exitcode)
jobs = options.njobs * options.job_batch_size * options.job_size * options.nthreads
logging.info("Observed Throughput (job/second) %s", jobs / (time.time() - start))
logging.info("All results are verified!")
