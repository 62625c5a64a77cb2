# HTC-Grid's "Developing a Client Application" program, verbatim but for two changes: the
# import line, and username/password taken from $USERNAME/$PASSWORD as HTC-Grid's examples do.
# ruff: noqa
# fmt: off

from htcgrid.connector import AWSConnector

import os
import json
import logging

client_config_file = os.environ['AGENT_CONFIG_FILE']

with open(client_config_file, 'r') as file:
    client_config_file = json.loads(file.read())

username = os.environ.get("USERNAME", "")
password = os.environ.get("PASSWORD", "")

if __name__ == "__main__":

    logging.info("Simple Client")
    gridConnector = AWSConnector()

    gridConnector.init(client_config_file, username=username, password=password)
    gridConnector.authenticate()

    task_1_definition = {
        "worker_arguments": ["1000", "1", "1"]
    }

    task_2_definition = {
        "worker_arguments": ["2000", "1", "1"]
    }

    submission_resp = gridConnector.send([task_1_definition, task_2_definition])
    logging.info(submission_resp)


    results = gridConnector.get_results(submission_resp, timeout_sec=100)
    logging.info(results)
